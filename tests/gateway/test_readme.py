"""What the README shows must work as shown."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

from gatewayd.plugin_manager import Plugins
from gatewayd.profiles import Profile
from tests.support.gateway import ROOT


def section(title: str) -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def test_readme_profile_example_is_valid() -> None:
    block = re.search(r"```toml\n(.*?)```", section("Add a device profile"), re.S)
    assert block
    profile = Profile.model_validate(tomllib.loads(block.group(1)))
    plugins = Plugins()
    plugins.load()
    driver = plugins.driver_classes()[profile.driver]
    driver.options.model_validate({**profile.options, "port": "/dev/ttyACM0"})


def test_bundled_profiles_pass_profiles_check() -> None:
    result = subprocess.run([sys.executable, "-m", "gatewayd", "profiles", "check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": ok") >= 4


def test_example_config_checks_ok() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gatewayd", "config", "check",
         str(ROOT / "docs" / "gatewayd.example.toml")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_profiles_check_names_bad_keys(tmp_path) -> None:
    (tmp_path / "bad-scanner.toml").write_text(
        'id = "bad-scanner"\nvendor = "x"\nmodel = "y"\nfamily = "toaster"\n'
        'driver = "serial_scanner"\n[options]\nbaudrate = "fast"\n'
    )
    (tmp_path / "wrong-options.toml").write_text(
        'id = "wrong-options"\nvendor = "x"\nmodel = "y"\nfamily = "barcode_scanner"\n'
        'driver = "serial_scanner"\n[match]\nusb = ["12:34"]\n'
    )
    (tmp_path / "bad-baud.toml").write_text(
        'id = "bad-baud"\nvendor = "x"\nmodel = "y"\nfamily = "barcode_scanner"\n'
        'driver = "serial_scanner"\n[options]\nbaudrate = "fast"\nterminator = "CR"\n'
    )
    result = subprocess.run([sys.executable, "-m", "gatewayd", "profiles", "check",
                             str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "bad-scanner.toml: family: Input should be" in result.stderr
    assert "wrong-options.toml: match.usb: '12:34': expected VVVV:PPPP" in result.stderr
    assert "bad-baud.toml: options.baudrate: Input should be a valid integer" in result.stderr
    assert "Traceback" not in result.stderr
