"""pyproject.toml, requirements.lock and environment.yml must agree (see helpers.environment)."""

import pytest

from helpers import environment, paths


def test_lock_environment_and_pyproject_agree():
    assert environment.check_consistency() == []


def test_every_lock_line_is_an_exact_pin():
    pins = environment.read_lock()
    assert len(pins) > 50  # a full resolution, not just the direct dependencies
    assert all(v and v[0].isdigit() for v in pins.values())


def test_check_consistency_catches_a_drifted_pin(tmp_path):
    for name in (environment.LOCK, environment.ENV_YML, environment.PYPROJECT):
        (tmp_path / name).write_text((paths.ROOT / name).read_text())
    env = (tmp_path / environment.ENV_YML).read_text()
    pin = next(line for line in env.splitlines() if "pandas==" in line)
    (tmp_path / environment.ENV_YML).write_text(env.replace(pin, "      - pandas==0.0.1"))
    problems = environment.check_consistency(tmp_path)
    assert any("pandas" in p and "0.0.1" in p for p in problems)


def test_check_consistency_catches_an_unpinned_dependency(tmp_path):
    for name in (environment.LOCK, environment.ENV_YML):
        (tmp_path / name).write_text((paths.ROOT / name).read_text())
    pyproject = (paths.ROOT / environment.PYPROJECT).read_text()
    (tmp_path / environment.PYPROJECT).write_text(
        pyproject.replace('    "tqdm",\n', '    "tqdm",\n    "not-a-real-package",\n'))
    assert any("not-a-real-package" in p for p in environment.check_consistency(tmp_path))


@pytest.mark.parametrize("bad", ["pandas>=2", "pandas"])
def test_read_lock_rejects_inexact_pins(tmp_path, bad):
    (tmp_path / environment.LOCK).write_text(f"numpy==2.0.0\n{bad}\n")
    with pytest.raises(ValueError, match="exact pin"):
        environment.read_lock(tmp_path)
