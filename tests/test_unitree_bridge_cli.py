"""`striata bridge unitree-g1` (and `bridge arm`) on the command line: errors are one line, exit 2; the
DDS configuration in use is printed on start and can be replaced."""

from __future__ import annotations

import time
from pathlib import Path

from typer.testing import CliRunner

from striata.cli import app

runner = CliRunner()
VENDOR_G1 = (
    Path(__file__).resolve().parents[2] / "shared/vendor/unitree_mujoco/unitree_robots/g1/g1_29dof.xml"
)


def _error_lines(result) -> list[str]:
    """The output without the DDS configuration the G1 bridge prints on start."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    if lines and lines[0].startswith("[bridge] DDS config"):
        lines = lines[3:]  # the heading, the XML declaration and the one-line XML
    return lines


def test_bad_domain_id_names_the_field() -> None:
    result = runner.invoke(app, ["bridge", "unitree-g1", "--domain-id", "999"])
    assert result.exit_code == 2
    lines = _error_lines(result)
    assert len(lines) == 1 and "domain_id" in lines[0] and "999" in lines[0]


def test_no_g1_on_the_interface_is_one_line_within_the_connect_timeout() -> None:
    started = time.monotonic()
    result = runner.invoke(app, ["bridge", "unitree-g1", "--domain-id", "45", "--connect-timeout-s", "0.3"])
    assert time.monotonic() - started < 10.0
    assert result.exit_code == 2
    lines = _error_lines(result)
    assert len(lines) == 1 and "no rt/lowstate from a G1 within 0.3 s" in lines[0]


def test_unknown_interface_and_bad_endpoint_are_user_errors() -> None:
    result = runner.invoke(app, ["bridge", "unitree-g1", "--interface", "nosuchif0", "--domain-id", "46"])
    assert result.exit_code == 2
    assert "interface: cannot open DDS domain 46 on 'nosuchif0'" in result.output
    result = runner.invoke(app, ["bridge", "arm", "--port", "/dev/no-such-tty"])
    assert result.exit_code == 2
    lines = _error_lines(result)
    assert len(lines) == 1 and "port: cannot open '/dev/no-such-tty'" in lines[0]


def test_the_dds_config_is_the_vendors_by_default_shown_and_replaceable(tmp_path: Path) -> None:
    result = runner.invoke(app, ["bridge", "unitree-g1", "--domain-id", "51", "--connect-timeout-s", "0.2"])
    assert '<NetworkInterface name="lo" priority="default" multicast="default"/>' in result.output
    assert "AllowMulticast" not in result.output and result.exit_code == 2

    peers = ["--peer", "127.0.0.1", "--peer", "10.0.0.2"]
    result = runner.invoke(
        app, ["bridge", "unitree-g1", "--domain-id", "52", "--connect-timeout-s", "0.2", *peers]
    )
    assert "<AllowMulticast>false</AllowMulticast>" in result.output
    assert '<Peer Address="127.0.0.1"/><Peer Address="10.0.0.2"/>' in result.output

    mine = tmp_path / "cyclonedds.xml"
    mine.write_text(
        '<CycloneDDS><Domain Id="any"><General><Interfaces><NetworkInterface name="lo"/></Interfaces>'
        "</General></Domain></CycloneDDS>"
    )
    result = runner.invoke(
        app,
        [
            "bridge",
            "unitree-g1",
            "--domain-id",
            "53",
            "--connect-timeout-s",
            "0.2",
            "--dds-config",
            str(mine),
        ],
    )
    assert mine.read_text() in result.output
    assert "no rt/lowstate from a G1 within 0.2 s on the given DDS config" in result.output

    result = runner.invoke(app, ["bridge", "unitree-g1", "--dds-config", str(tmp_path / "missing.xml")])
    assert result.exit_code == 2
    lines = _error_lines(result)
    assert len(lines) == 1 and "dds_config: cannot read" in lines[0]


def test_sim_gain_options_are_checked_before_connecting() -> None:
    result = runner.invoke(app, ["bridge", "unitree-g1", "--sim-model", str(VENDOR_G1)])
    assert result.exit_code == 2
    lines = _error_lines(result)
    assert len(lines) == 1 and "sim_model, sim_timestep: give both" in lines[0]
    result = runner.invoke(
        app, ["bridge", "unitree-g1", "--sim-model", "nosuch.xml", "--sim-timestep", "0.005"]
    )
    assert result.exit_code == 2
    lines = _error_lines(result)
    assert len(lines) == 1 and "sim_model: cannot load 'nosuch.xml'" in lines[0]
