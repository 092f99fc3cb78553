"""A real Modbus TCP server for floodguard's tests: pymodbus 3.x (from PyPI,
in the venv scripts/test.sh makes at target/pyenv), one device context that
answers every unit id, each table `--size` addresses long (from address 0)
and zero but for the values given.

    modbus_server.py --port P [--size N] [--holding A=V,...] [--input A=V,...]
                     [--coils A=0|1,...] [--discrete A=0|1,...]

Values are 16-bit words (registers) or 0/1 (bits). Clients may write coils
and holding registers while it runs (functions 5, 6, 15, 16); a read past
`--size` is answered with an exception (illegal data address). Prints
"ready" once it listens; stops on SIGTERM.
"""
import argparse
import asyncio
import logging
import signal
import socket

from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server import StartAsyncTcpServer

try:  # pymodbus >= 3.10
    from pymodbus.datastore import ModbusDeviceContext as DeviceContext
except ImportError:  # pymodbus 3.6 – 3.9
    from pymodbus.datastore import ModbusSlaveContext as DeviceContext


def values(spec, size, bits):
    v = [0] * size
    for item in filter(None, (spec or "").split(",")):
        a, x = item.split("=")
        x = int(x, 0)
        v[int(a)] = bool(x) if bits else x & 0xFFFF
    return [bool(b) for b in v] if bits else v


def context(a):
    # A data block's address is 1-based in every 3.x release: block address 1
    # holds protocol address 0.
    def block(spec, bits):
        return ModbusSequentialDataBlock(1, values(spec, a.size, bits))

    kw = dict(
        hr=block(a.holding, False),
        ir=block(a.input, False),
        co=block(a.coils, True),
        di=block(a.discrete, True),
    )
    device = DeviceContext(**kw)
    try:  # 3.10+: devices=, 3.6 – 3.9: slaves=
        return ModbusServerContext(devices=device, single=True)
    except TypeError:
        return ModbusServerContext(slaves=device, single=True)


async def wait_listening(port):
    loop = asyncio.get_running_loop()
    while True:
        s = socket.socket()
        s.setblocking(False)
        try:
            await loop.sock_connect(s, ("127.0.0.1", port))
            return
        except OSError:
            await asyncio.sleep(0.02)
        finally:
            s.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--holding")
    ap.add_argument("--input")
    ap.add_argument("--coils")
    ap.add_argument("--discrete")
    a = ap.parse_args()
    logging.getLogger("pymodbus").setLevel(logging.ERROR)

    server = asyncio.create_task(
        StartAsyncTcpServer(context=context(a), address=("127.0.0.1", a.port))
    )
    await wait_listening(a.port)
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    done, _ = await asyncio.wait(
        [server, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
    )
    if server in done:
        server.result()  # raises what made it end
    server.cancel()


if __name__ == "__main__":
    asyncio.run(main())
