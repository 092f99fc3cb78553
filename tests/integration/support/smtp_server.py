"""A real SMTP server for floodguard's tests: aiosmtpd storing every mail in
a Maildir, plain, STARTTLS or implicit TLS, with optional AUTH PLAIN/LOGIN.

    smtp_server.py --port P --maildir DIR [--mode plain|starttls|smtps]
                   [--cert C --key K] [--user U --password P]
Prints "ready" once it accepts connections; stops on SIGTERM.
"""
import argparse
import asyncio
import signal
import ssl

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--maildir", required=True)
    ap.add_argument("--mode", default="plain", choices=["plain", "starttls", "smtps"])
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--user")
    ap.add_argument("--password")
    a = ap.parse_args()

    params = {}
    ctx = None
    if a.mode != "plain":
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.cert, a.key)
    if a.mode == "starttls":
        params.update(tls_context=ctx, require_starttls=True)
    if a.user:
        def check(server, session, envelope, mechanism, data):
            ok = data.login.decode() == a.user and data.password.decode() == a.password
            return AuthResult(success=ok, handled=False)
        params.update(authenticator=check, auth_required=True, auth_require_tls=a.mode == "starttls")

    c = Controller(Mailbox(a.maildir), hostname="127.0.0.1", port=a.port,
                   ssl_context=ctx if a.mode == "smtps" else None,
                   server_hostname="localhost", **params)
    c.start()
    print("ready", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    c.stop()


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    main()
