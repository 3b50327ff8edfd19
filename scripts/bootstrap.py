"""Prepare a machine to run the service: the ``.venv`` and the Redis / InfluxDB server binaries.

It runs before the virtual environment exists, so it uses only the standard library and whatever
``python3`` started it. Everything is idempotent: the venv is reinstalled only when a requirements
file changed (a hash stamp inside ``.venv``), and apt runs only for a binary that is missing.

    python3 -m scripts.bootstrap venv requirements.txt
    python3 -m scripts.bootstrap binaries [redis-server] [influxd]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
VENV_DIR = PROJECT_ROOT / ".venv"
VENV_PYTHON = VENV_DIR / "bin" / "python"

#: Server binary -> Debian package that provides it (Debian 12: redis 7.0, InfluxDB 1.6).
APT_PACKAGES = {"redis-server": "redis-server", "influxd": "influxdb"}


class BootstrapError(RuntimeError):
    """A step failed; the message says which and what to do."""


def _run(command: Sequence[str | Path], *, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(str(part) for part in command), flush=True)
    completed = subprocess.run([str(part) for part in command], env=env, check=False)
    if completed.returncode != 0:
        raise BootstrapError(f"'{command[0]} ...' failed with exit code {completed.returncode}")


def apt_install(packages: Sequence[str]) -> None:
    """``apt-get install`` without prompts (as root, or through sudo when available)."""
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            raise BootstrapError(f"Installing {', '.join(packages)} needs root: run as root or install sudo.")
        prefix = ["sudo", "--preserve-env=DEBIAN_FRONTEND"]
    if shutil.which("apt-get") is None:
        raise BootstrapError(f"apt-get is not available; install {', '.join(packages)} yourself.")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"Installing {', '.join(packages)} with apt-get", flush=True)
    _run([*prefix, "apt-get", "update", "-q"], env=env)
    _run([*prefix, "apt-get", "install", "-y", "-q", "--no-install-recommends", *packages], env=env)


POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


@contextlib.contextmanager
def services_not_autostarted() -> Iterator[None]:
    """Keep apt from starting the packages' system services while installing them.

    Debian starts ``influxdb`` on install with its default config, which listens on every interface;
    the stack runs its own on 127.0.0.1 instead. ``policy-rc.d`` returning 101 is Debian's documented
    way to say "do not start services now"; a file that already exists is left alone.
    """
    if POLICY_RC_D.exists():
        yield
        return
    POLICY_RC_D.write_text(
        "#!/bin/sh\n# Written by energy-forecasting scripts/bootstrap.py during apt-get install\nexit 101\n"
    )
    POLICY_RC_D.chmod(0o755)
    try:
        yield
    finally:
        POLICY_RC_D.unlink(missing_ok=True)


def ensure_binaries(binaries: Sequence[str]) -> None:
    """Install the Debian packages of the given server binaries that are not on PATH."""
    missing = [binary for binary in binaries if shutil.which(binary) is None]
    if not missing:
        print(f"Found {', '.join(binaries)}; nothing to install", flush=True)
        return
    with services_not_autostarted():
        apt_install([APT_PACKAGES[binary] for binary in missing])
    still_missing = [binary for binary in missing if shutil.which(binary) is None]
    if still_missing:
        raise BootstrapError(f"{', '.join(still_missing)} still not on PATH after apt-get install")


def requirements_digest(requirements: Path) -> str:
    """Hash of a requirements file and the files it includes with ``-r``."""
    digest = hashlib.sha256()
    pending = [requirements]
    while pending:
        path = pending.pop()
        text = path.read_text(encoding="utf-8")
        digest.update(text.encode("utf-8"))
        for line in text.splitlines():
            if line.startswith(("-r ", "--requirement ")):
                pending.append(path.parent / line.split(maxsplit=1)[1].strip())
    return digest.hexdigest()


def _create_venv() -> None:
    try:
        _run([sys.executable, "-m", "venv", VENV_DIR])
    except BootstrapError:
        # Debian's python3 ships without ensurepip until python3-venv is installed; the failed
        # attempt leaves a venv without pip behind, which must go before the retry.
        shutil.rmtree(VENV_DIR, ignore_errors=True)
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        apt_install(["python3-venv", f"{version}-venv"])
        _run([sys.executable, "-m", "venv", VENV_DIR])
    _run([VENV_PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip"])


def ensure_venv(requirements: Path) -> None:
    """Create ``.venv`` if needed and install ``requirements`` unless they are installed already."""
    requirements = requirements if requirements.is_absolute() else PROJECT_ROOT / requirements
    if not VENV_PYTHON.exists():
        _create_venv()
    stamp = VENV_DIR / f".installed-{requirements.name}.sha256"
    digest = requirements_digest(requirements)
    if stamp.is_file() and stamp.read_text(encoding="utf-8").strip() == digest:
        print(f".venv is up to date with {requirements.name}", flush=True)
        return
    _run([VENV_PYTHON, "-m", "pip", "install", "--disable-pip-version-check", "-r", requirements])
    stamp.write_text(digest + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m scripts.bootstrap", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    venv = commands.add_parser("venv", help="create .venv and install a requirements file")
    venv.add_argument("requirements", type=Path, nargs="?", default=Path("requirements.txt"))
    binaries = commands.add_parser("binaries", help="apt-get install missing server binaries")
    binaries.add_argument("binaries", nargs="*", metavar="BINARY", help=f"default: {' '.join(APT_PACKAGES)}")
    arguments = parser.parse_args(argv)
    unknown = set(getattr(arguments, "binaries", None) or ()) - set(APT_PACKAGES)
    if unknown:
        parser.error(f"unknown binaries {sorted(unknown)}; known: {sorted(APT_PACKAGES)}")
    try:
        if arguments.command == "venv":
            ensure_venv(arguments.requirements)
        else:
            ensure_binaries(arguments.binaries or list(APT_PACKAGES))
    except BootstrapError as error:
        print(f"bootstrap failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
