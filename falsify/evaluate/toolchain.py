"""Locate the external tools the evaluator needs, or fail at start with what to install.

Checked once before any sample runs, so a missing tool is one clear line (and exit 2),
not a hundred identical per-sample failures.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REGISTRY = Path("/usr/share/cargo/registry")

# tool -> what provides it (Debian package names; cargo/rustc come from rustup or apt).
_PROVIDERS = {
    "cargo": "cargo and rustc 1.95 (rustup, or apt: cargo rustc)",
    "rustfmt": "rustfmt (rustup component add rustfmt, or apt: rustfmt)",
    "llvm-profdata-22": "llvm-22 (apt: llvm-22)",
    "llvm-cov-22": "llvm-22 (apt: llvm-22)",
    "unshare": "util-linux (apt: util-linux)",
    "setpriv": "util-linux (apt: util-linux)",
    "mount": "mount (apt: mount)",
}


class ToolchainMissing(RuntimeError):
    """A required tool is absent; the message names the package to install."""


@dataclass(frozen=True)
class Toolchain:
    sysroot: Path            # the rustc toolchain directory (bin/cargo, bin/rustc, bin/cargo-clippy)
    llvm_profdata: Path
    llvm_cov: Path
    unshare: Path
    setpriv: Path
    has_clippy: bool

    @property
    def rustc_version(self) -> str:
        out = subprocess.run([str(self.sysroot / "bin" / "rustc"), "--version"], capture_output=True, text=True)
        return out.stdout.strip()


def find_toolchain() -> Toolchain:
    """Return the toolchain or raise ToolchainMissing naming every missing piece."""
    missing = [_PROVIDERS[t] for t in _PROVIDERS if shutil.which(t) is None]
    if not (REGISTRY / "proptest-1.0.0").is_dir() and not any(REGISTRY.glob("proptest-1.*")):
        missing.append(f"proptest in {REGISTRY} (apt: librust-proptest-dev)")
    if missing:
        raise ToolchainMissing("missing toolchain: install " + "; ".join(dict.fromkeys(missing)))
    # rustup's `cargo` is a proxy under ~/.cargo (unreadable to the sandbox user), so the
    # sandbox mounts the real toolchain directory instead; ask rustc where it lives.
    sysroot = subprocess.run(["rustc", "--print", "sysroot"], capture_output=True, text=True)
    root = Path(sysroot.stdout.strip())
    if sysroot.returncode != 0 or not (root / "bin" / "cargo").exists():
        raise ToolchainMissing(f"missing toolchain: no cargo next to rustc's sysroot {root!s}; install cargo and rustc 1.95")
    return Toolchain(
        sysroot=root,
        llvm_profdata=Path(shutil.which("llvm-profdata-22")),
        llvm_cov=Path(shutil.which("llvm-cov-22")),
        unshare=Path(shutil.which("unshare")),
        setpriv=Path(shutil.which("setpriv")),
        has_clippy=(root / "bin" / "cargo-clippy").exists() and (root / "bin" / "clippy-driver").exists(),
    )
