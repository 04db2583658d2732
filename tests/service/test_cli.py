"""`echoseek serve` in the foreground (one process, ray=false) and `echoseek search` against it,
as a user runs them; their one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from echoseek.jobs import search
from tests.service.conftest import PIXELS, frame, free_port

ROOT = Path(__file__).resolve().parents[2]


def echoseek(*args: str) -> list[str]:
    return [sys.executable, "-m", "echoseek.cli", *args]


def test_serve_in_the_foreground_and_search_from_the_command_line(
    service_index: Path, service_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    proc = subprocess.Popen(
        echoseek(
            "serve",
            f"index={service_index}",
            f"dataset={service_dataset}",
            "ray=false",
            f"pixel_size={PIXELS}",
            f"port={port}",
            "for_s=120",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        url = f"http://127.0.0.1:{port}"
        assert first.startswith("serving index version v") and first.rstrip().endswith(url), first
        assert "web page" in proc.stdout.readline()
        Image.fromarray(frame(service_dataset, 5)).save(tmp_path / "q.png")
        assert search.main([f"url={url}", f"image={tmp_path / 'q.png'}", "k=4"]) == 0
        table = capsys.readouterr().out.splitlines()
        assert table[0].split() == ["rank", "id", "item", "score", "label", "source", "frame_index"]
        assert len(table) == 6 and table[1].split()[-1] == "5" and "model pixels" in table[-1]
        np.save(tmp_path / "v.npy", np.ones((2, PIXELS * PIXELS), np.float32))
        assert search.main([f"url={url}", f"vector={tmp_path / 'v.npy'}", "k=2"]) == 0
        assert len(capsys.readouterr().out.splitlines()) == 4
        assert search.main([f"url={url}", "item=99999"]) == 2
        assert "404 id 99999: not in index version" in capsys.readouterr().err
    finally:
        proc.terminate()
        proc.wait(30)
    assert "stopped the service" in (proc.stdout.read() if proc.stdout else "")


def test_ray_false_with_a_serve_config_runs_its_args_in_one_process(
    service_index: Path, tmp_path: Path
) -> None:
    """``echoseek serve serve/local.yaml ray=false``: the file's args, served by uvicorn in this
    one process (not Serve, whose deployments the file also names)."""
    import httpx
    import yaml

    data = yaml.safe_load((ROOT / "serve" / "local.yaml").read_text())
    port = free_port()
    data["applications"][0]["args"].update(
        index=str(service_index), dataset="", model="pixels", pixel_size=PIXELS
    )
    data["http_options"]["port"] = port
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump(data))
    proc = subprocess.Popen(
        echoseek("serve", str(tmp_path / "serve.yaml"), "ray=false", "for_s=60"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "uvicorn ingress" in first and first.rstrip().endswith(f":{port}"), first
        body = {"vector": [0.5] * PIXELS * PIXELS, "k": 2}
        r = httpx.post(f"http://127.0.0.1:{port}/v1/search", json=body, timeout=30)
        assert r.status_code == 200 and len(r.json()["results"]) == 2
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "ray" not in err.lower(), err  # no Ray started, nothing of it printed


def test_command_line_errors(service_index: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert search.main(["k=3"]) == 2
    assert "exactly one of image=PATH" in capsys.readouterr().err
    assert search.main([f"url=http://127.0.0.1:{free_port()}", "item=1"]) == 2
    assert "cannot reach the service" in capsys.readouterr().err
    env = {**os.environ, "ECHOSEEK_TOKENS": ""}
    r = subprocess.run(
        echoseek("serve", f"index={service_index}", "host=0.0.0.0", "ray=false"),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 2 and "not a loopback address; configure tokens" in r.stderr
    r = subprocess.run(
        echoseek("serve", "index=/nowhere", "ray=false"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "/nowhere" in r.stderr and "Traceback" not in r.stderr
