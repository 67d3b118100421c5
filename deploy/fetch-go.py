"""Fetch a Go toolchain from the Go module proxy into a directory: `fetch-go.py 1.26.8 DIR`.

For `make k8s-tools` on a machine without Go, or with one too old to build kustomize (Debian
bookworm's is 1.19). The proxy serves every Go release as the module `golang.org/toolchain`
(what `go` itself downloads when it switches toolchains), so this needs no registry beyond the
ones the project already uses. Like `go`, it checks the archive against the Go checksum
database (sum.golang.org or $GOSUMDB's, asked through the proxy): the module's `h1:` hash, a SHA-256 over the
SHA-256 of every file, must match before anything is unpacked.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import platform
import shutil
import sys
import tempfile
import urllib.request
import zipfile

ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def module_hash(data: bytes) -> str:
    """The `h1:` hash of a module zip (golang.org/x/mod/sumdb/dirhash Hash1)."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        names = sorted(i.filename for i in z.infolist() if not i.is_dir())
        summary = "".join(f"{hashlib.sha256(z.read(n)).hexdigest()}  {n}\n" for n in names)
    return "h1:" + base64.b64encode(hashlib.sha256(summary.encode()).digest()).decode()


def check_sum(data: bytes, module_version: str, proxy: str) -> str | None:
    """None when the checksum database knows this archive; else what is wrong. Asked through
    the proxy (`<proxy>/sumdb/<db>/lookup/...`, which proxies serve, as `go` asks it where the
    database itself is not reachable)."""
    sumdb = os.environ.get("GOSUMDB", "sum.golang.org").split()[0].split("+")[0]
    if sumdb == "off":
        return "GOSUMDB=off: refusing to run a toolchain no checksum database vouches for"
    url = f"{proxy.rstrip('/')}/sumdb/{sumdb}/lookup/golang.org/toolchain@{module_version}"
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            record = r.read().decode()
    except OSError as e:
        return f"could not ask the checksum database {url}: {e}"
    want = f"golang.org/toolchain {module_version} "
    known = [line.split()[-1] for line in record.splitlines() if line.startswith(want)]
    got = module_hash(data)
    if got not in known:
        return f"the archive's hash {got} is not the checksum database's {known or '(none)'}"
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: fetch-go.py VERSION DIR   e.g. fetch-go.py 1.26.8 .tools/go1.26.8",
              file=sys.stderr)
        return 2
    version, dest = argv
    machine = platform.machine().lower()
    if machine not in ARCHES or not sys.platform.startswith("linux"):
        print(f"fetch-go: no Go toolchain for {sys.platform}/{machine} here; install Go >= 1.22",
              file=sys.stderr)
        return 1
    proxy = os.environ.get("GOPROXY", "https://proxy.golang.org").split(",")[0].split("|")[0]
    if proxy in ("direct", "off", ""):
        proxy = "https://proxy.golang.org"
    module_version = f"v0.0.1-go{version}.linux-{ARCHES[machine]}"
    url = f"{proxy.rstrip('/')}/golang.org/toolchain/@v/{module_version}.zip"
    print(f"fetch-go: downloading Go {version} from {url}", file=sys.stderr)
    try:
        with urllib.request.urlopen(url, timeout=300) as r:
            data = r.read()
    except OSError as e:
        print(f"fetch-go: could not download {url}: {e}", file=sys.stderr)
        return 1
    problem = check_sum(data, module_version, proxy)
    if problem:
        print(f"fetch-go: {problem}", file=sys.stderr)
        return 1
    prefix = f"golang.org/toolchain@{module_version}/"
    parent = os.path.dirname(os.path.abspath(dest))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".go-", dir=parent)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            for info in z.infolist():
                if not info.filename.startswith(prefix) or info.is_dir():
                    continue
                target = os.path.join(tmp, info.filename[len(prefix):])
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with z.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
                mode = (info.external_attr >> 16) & 0o777
                os.chmod(target, mode or 0o644)
        if not os.access(os.path.join(tmp, "bin", "go"), os.X_OK):
            print(f"fetch-go: {url} holds no executable bin/go", file=sys.stderr)
            return 1
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"fetch-go: Go {version} in {dest}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
