"""`python -m bulkfetch` and the `bulkfetch` console script."""

import ctypes
import os
import sys

# Options whose value is a secret, hidden from `ps` once the process has started. The value
# of --proxy and --user may hold a password; -H a token.
SECRET_OPTIONS = ("-u", "--user", "-H", "--header", "--proxy")


def _standard_streams() -> None:
    """Started with stdin, stdout or stderr closed (`2>&-`), the first file we open would take
    that descriptor, and a line meant for stderr would land in a data file: /dev/null holds
    each closed one instead, and print() on a missing sys.stderr no longer falls back to
    stdout."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free descriptor: `fd`
            if getattr(sys, name) is None:
                # Held for the whole run, so not in a `with`.
                stream = open(null, "r" if fd == 0 else "w", closefd=False)  # noqa: SIM115
                setattr(sys, name, stream)


def _hide_secrets() -> None:
    """Overwrite the values of SECRET_OPTIONS with `*` where `ps` reads them (the process's
    original argv, /proc/self/cmdline), as curl does for -u; the workers, forked later, show
    the same. Linux only; other users can read argv in the moment before this runs, so the
    README asks for BULKFETCH_USER, BULKFETCH_HEADER or `-H @FILE` instead."""
    try:
        with open("/proc/self/cmdline", "rb") as f:
            args = f.read().split(b"\0")
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        arg_start = int(fields[45])  # field 48 of stat(5); fields[0] is field 3
    except (OSError, IndexError, ValueError):
        return
    offset = 0
    hide_next = False
    for arg in args:
        text = arg.decode(errors="replace")
        start, end = None, len(arg)
        if hide_next:
            start = 0
        elif text.startswith("--") and text.split("=", 1)[0] in SECRET_OPTIONS and "=" in text:
            start = text.index("=") + 1
        elif not text.startswith("--") and text[:2] in SECRET_OPTIONS and len(text) > 2:
            start = 2  # attached: -uUSER:PASSWORD, -HName:value
        elif (password := _password_span(arg)) is not None:  # a URL given as a SOURCE
            start, end = password
        if start is not None and end > start:
            ctypes.memmove(arg_start + offset + start, b"*" * (end - start), end - start)
        hide_next = text in SECRET_OPTIONS
        offset += len(arg) + 1


def _password_span(arg: bytes) -> tuple[int, int] | None:
    """Where the password is in `scheme://user:password@host/...`, if anywhere."""
    scheme, sep, rest = arg.partition(b"://")
    if not sep or b"/" in scheme:
        return None
    authority = rest.split(b"/", 1)[0].split(b"?", 1)[0].split(b"#", 1)[0]
    userinfo, at, _ = authority.rpartition(b"@")
    if not at or b":" not in userinfo:
        return None
    start = len(scheme) + len(sep) + userinfo.index(b":") + 1
    return start, len(scheme) + len(sep) + len(userinfo)


def run() -> None:
    _standard_streams()
    _hide_secrets()
    from bulkfetch.cli import main  # after: nothing may open a file before the streams are held
    from bulkfetch.show.outgoing import Outlet

    # Every line for people leaves through stderr: a reader that goes away must not stop the
    # run (the one exit: show/outgoing.py).
    sys.stderr = Outlet(sys.stderr)

    sys.exit(main())


if __name__ == "__main__":
    run()
