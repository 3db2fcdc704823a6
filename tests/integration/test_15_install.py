"""15 install: `make install` / `make uninstall` into a temporary DESTDIR.

The binary under test ($RAINBOW_BIN) is installed as is: make gets its
directory as BUILD and is told (-o) never to remake it, so the test neither
rebuilds nor touches anyone's build directory. Checks what lands where, that
the man page renders without warnings (when man or groff is installed) and
names every option of --help, that the systemd unit points at the installed
binary, and that the installed binary validates the installed example
configuration."""
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

import rainbow as rb

REPO = Path(__file__).resolve().parents[2]
FILES = {
    "usr/bin/rainbow-server": 0o755,
    "usr/share/man/man8/rainbow-server.8": 0o644,
    "usr/share/doc/rainbow/rainbow.ini.example": 0o644,
    "usr/lib/systemd/system/rainbow-server.service": 0o644,
}


def make(*args, timeout=120):
    binary = Path(rb.rainbow_bin()).resolve()
    assert binary.is_file(), "no gateway binary at %s (set RAINBOW_BIN)" % binary
    # A make running this test (make integration) exports its jobserver; the
    # child must not inherit it.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(["make", "--no-print-directory", "-C", str(REPO),
                           "BUILD=%s" % binary.parent, "-o", str(binary)] + list(args),
                          capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL)


@pytest.fixture
def installed(tmp_path):
    dest = tmp_path / "dest"
    r = make("install", "DESTDIR=%s" % dest, "PREFIX=/usr")
    assert r.returncode == 0, r.stdout + r.stderr
    return dest


def test_install_puts_every_file_in_place(installed):
    found = sorted(str(p.relative_to(installed)) for p in installed.rglob("*") if p.is_file())
    assert found == sorted(FILES), found
    for rel, mode in FILES.items():
        assert stat.S_IMODE((installed / rel).stat().st_mode) == mode, rel
    assert (installed / "usr/bin/rainbow-server").read_bytes() == \
        Path(rb.rainbow_bin()).read_bytes()
    assert (installed / "usr/share/doc/rainbow/rainbow.ini.example").read_text() == \
        (REPO / "conf/rainbow.ini").read_text()


def test_installed_binary_checks_the_example_config(installed):
    example = installed / "usr/share/doc/rainbow/rainbow.ini.example"
    r = subprocess.run([str(installed / "usr/bin/rainbow-server"), "--check", "-f", str(example)],
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
                       cwd=str(installed))
    assert r.returncode == 0, r
    assert r.stdout.strip() == "%s: ok" % example, r
    # The example has a (development) token: no empty-token warning.
    assert "security_token" not in r.stderr, r.stderr
    # --check opens nothing: no data_dir appeared
    assert not (installed / "data").exists()


def test_systemd_unit_runs_the_installed_binary(installed):
    unit = (installed / "usr/lib/systemd/system/rainbow-server.service").read_text()
    lines = [ln.strip() for ln in unit.splitlines() if ln.strip() and not ln.startswith("#")]
    assert "/usr/local" not in unit, "PREFIX=/usr not applied to the unit"
    want = ["Type=simple", "Restart=on-failure", "NoNewPrivileges=yes",
            "StateDirectory=rainbow", "LoadCredential=rainbow.ini:/etc/rainbow/rainbow.ini"]
    for w in want:
        assert w in lines, "%s missing from the unit" % w
    execs = [ln for ln in lines if ln.startswith("ExecStart=")]
    assert execs == ["ExecStart=/usr/bin/rainbow-server -f %d/rainbow.ini"], execs
    assert any(re.fullmatch(r"LimitNOFILE=\d+", ln) for ln in lines), lines
    assert "[Install]" in lines and "WantedBy=multi-user.target" in lines


def test_man_page_covers_every_option():
    page = (REPO / "docs/rainbow-server.8").read_text()
    r = subprocess.run([rb.rainbow_bin(), "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r
    longs = re.findall(r"--([a-z][a-z-]+)", r.stdout)
    shorts = re.findall(r"^\s+-([a-z]),", r.stdout, re.M)
    assert set(longs) >= {"config", "port", "check", "help", "version"}, r.stdout
    for o in longs:
        assert "\\-\\-" + o in page, "--%s is not in the man page" % o
    for o in shorts:
        assert ".BR \\-%s " % o in page, "-%s is not in the man page" % o
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "FILES", "SIGNALS", "SEE ALSO"):
        assert ".SH " + section in page, section


def test_man_page_renders_without_warnings(installed, tmp_path):
    page = installed / "usr/share/man/man8/rainbow-server.8"
    env = dict(os.environ, MANWIDTH="80", MANPAGER="cat", PAGER="cat", LC_ALL="C.UTF-8")
    if shutil.which("man"):
        cmd = ["man", "--warnings", "-l", str(page)]
    elif shutil.which("groff"):
        cmd = ["groff", "-man", "-ww", "-Tutf8", str(page)]
    else:
        pytest.skip("neither man nor groff is installed")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env,
                       stdin=subprocess.DEVNULL, cwd=str(tmp_path))
    assert r.returncode == 0, r
    assert r.stderr == "", "warnings rendering the man page:\n" + r.stderr
    text = re.sub(r".\x08", "", r.stdout)  # drop overstrike bold/underline
    assert "rainbow-server -f file" not in text  # sanity: options are bracketed
    assert re.search(r"rainbow-server \[-f file\] \[-p port\] \[--check\]", text), text[:600]
    # installed with PREFIX=/usr: the page names the paths that were installed
    assert "/usr/share/doc/rainbow/rainbow.ini.example" in text
    assert "/usr/local" not in text


def test_uninstall_removes_what_install_put(installed):
    r = make("uninstall", "DESTDIR=%s" % installed, "PREFIX=/usr")
    assert r.returncode == 0, r.stdout + r.stderr
    left = [str(p.relative_to(installed)) for p in installed.rglob("*") if p.is_file()]
    assert left == [], left
    assert not (installed / "usr/share/doc/rainbow").exists()
