"""The local endpoint's and the demo's configuration, and their errors: no llama.cpp needed."""

from __future__ import annotations

import os

import pytest

from itcollect.config import DEFAULT_CONFIG_TEXT, parse_config
from itcollect.demo import DEMO_SETTINGS, demo_config_text, demo_dialogues_file, sample_files
from itcollect.kernel.errors import ConfigError
from itcollect.llm.local import BUNDLED_MODEL_NAME, local_server, local_settings, resolve_model

from .conftest import REPO, run_cli


def test_local_section_defaults_and_validation(tmp_path):
    assert local_settings(parse_config("")) == {"model_path": "", "n_ctx": 2048, "n_threads": 0, "port": 0,
                                                 "startup_timeout_s": 120.0}
    assert local_settings(None)["n_ctx"] == 2048  # a config without [local] (older workspace)
    with pytest.raises(ConfigError, match="unknown key 'local.n_gpu'"):
        parse_config("[local]\nn_gpu = 1\n")
    for bad, key in (("n_ctx = 16", "local.n_ctx"), ("port = 70000", "local.port"),
                     ("n_threads = -1", "local.n_threads")):
        with pytest.raises(ConfigError, match=key):
            with local_server(parse_config(f"[local]\n{bad}\n")):
                pass


def test_own_model_path_overrides_the_bundled_one(tmp_path):
    own = tmp_path / "models" / "Qwen2.5-7B-Instruct-Q4_K_M.gguf"
    own.parent.mkdir()
    own.write_bytes(b"GGUF")
    cfg = parse_config('[local]\nmodel_path = "models/Qwen2.5-7B-Instruct-Q4_K_M.gguf"\n', tmp_path / "itcollect.toml")
    assert resolve_model(cfg) == (own.resolve(), "Qwen2.5-7B-Instruct-Q4_K_M")
    cfg = parse_config('[local]\nmodel_path = "models/missing.gguf"\n', tmp_path / "itcollect.toml")
    with pytest.raises(ConfigError, match="local.model_path"):
        resolve_model(cfg)


def test_missing_extra_names_the_install_command(tmp_path):
    # A Python in which llama_cpp cannot be imported (sys.modules[name] = None is Python's import block).
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['llama_cpp'] = None\n")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    for args in (["serve-local"], ["demo", str(tmp_path / "demo")]):
        r = run_cli(*args, cwd=tmp_path, env=env, timeout=60)
        assert r.returncode == 1, r.stderr
        assert "pip install 'itcollect[local]'" in r.stderr and "llama_cpp" in r.stderr
        assert "Traceback" not in r.stderr
    assert not (tmp_path / "demo").exists()  # the demo failed before creating anything


def test_no_endpoint_and_no_key_says_how_to_point_at_one(tmp_path):
    ws = tmp_path / "ws"
    assert run_cli("init", str(ws)).returncode == 0
    for lang, text in (("en", "The government presented a new housing bill on Tuesday morning."),
                       ("zh", "政府周二上午提出了一项新的住房法案。")):
        (tmp_path / f"{lang}.txt").write_text(text + "\n", encoding="utf-8")
        assert run_cli("-C", str(ws), "ingest", str(tmp_path / f"{lang}.txt"), "--lang", lang).returncode == 0
    assert run_cli("-C", str(ws), "plan", "--dialogues", "1").returncode == 0
    env = {"OPENAI_API_KEY": ""}
    r = run_cli("-C", str(ws), "simulate", env=env)
    assert r.returncode == 1
    line = r.stderr.strip().splitlines()[-1]
    assert "--base-url" in line and "--model" in line and "OPENAI_API_KEY" in line and "--local" in line


def test_demo_config_is_the_default_with_demo_values_marked():
    text = demo_config_text()
    cfg = parse_config(text)
    assert cfg["llm"]["assistant"]["model"] == BUNDLED_MODEL_NAME
    pairs = cfg["mix"]["pairs"]
    assert {lang for pair in pairs for lang in pair.split("-")} == {"en", "zh", "de", "fr"}
    assert set(cfg["mix"]["instruction_langs"]) == {"en", "zh"}
    changed = [line for line in text.splitlines() if line.endswith("# itcollect demo")]
    assert len(changed) == len(DEMO_SETTINGS)
    # Everything else, comments included, is the default config line for line.
    kept = [line for line in text.splitlines() if not line.endswith("# itcollect demo")]
    default = [line for line in DEFAULT_CONFIG_TEXT.splitlines()]
    assert all(line in default for line in kept) and len(kept) == len(default) - len(changed)


def test_demo_finds_its_bundled_data():
    assert demo_dialogues_file().is_file()
    files = sample_files("sources")
    assert files and all(f.is_file() and f.suffix not in (".py", ".md") for f in files)
    assert {f.name.split(".")[-1] for f in files} & {"txt", "gz", "tsv", "jsonl", "sgm", "xml"}


def test_demo_with_model_but_no_base_url_is_usage_error(tmp_path):
    r = run_cli("demo", str(tmp_path / "d"), "--model", "x")
    assert r.returncode == 2 and "--base-url" in r.stderr


def test_demo_runs_every_stage_on_an_endpoint_and_reuses_everything_on_rerun(tmp_path, fake_openai):
    """The demo's orchestration, against the suite's loopback server (the --base-url switch); the
    local llama.cpp path of the same stages is covered in test_local_pipeline.py."""
    import json

    import datasets

    demo_dir = tmp_path / "demo"
    args = ("demo", str(demo_dir), "--dialogues", "6", "--base-url", fake_openai.base_url, "--model", "fake-model")
    r = run_cli(*args, env={"OPENAI_API_KEY": ""}, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "[9/9] stats" in r.stdout and f"dataset:   {demo_dir / 'export' / 'hf'}" in r.stdout
    assert "[6/9] judge every answer" in r.stdout and "judged" in r.stdout.split("Demo finished")[1]
    assert "SmolLM2" not in r.stdout.split("Demo finished")[1]  # the tiny-model note is for --local only
    sent = fake_openai.total_requests
    assert sent >= 6
    stats = json.loads(run_cli("-C", str(demo_dir), "stats", "--json").stdout)
    assert stats["specs"]["total"] == 6 and stats["specs"]["pending"] == 0
    assert stats["dialogues"]["by_origin"]["imported"] == 8
    assert stats["calls"]["sent"] == sent
    judge = stats["judge"]
    # every answer got its judge call (the suite's default responder does not answer in JSON: unparsed)
    assert judge["unjudged"] == 0 and judge["judged"] + judge["unparsed"] > 0
    dd = datasets.load_from_disk(str(demo_dir / "export" / "hf"))
    rows = [row for split in dd.values() for row in split]
    assert len(rows) == stats["filter"]["kept"] >= 8
    assert (demo_dir / "export" / "sharegpt.json").is_file() and (demo_dir / "export" / "dataset_info.json").is_file()
    config = (demo_dir / "itcollect.toml").read_text(encoding="utf-8")
    assert "# itcollect demo" in config

    # A re-run reuses the workspace: nothing ingested, imported, planned or sent again.
    r = run_cli(*args, env={"OPENAI_API_KEY": ""}, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "reusing the existing workspace" in r.stdout and "not ingesting again" in r.stdout
    assert "nothing to send" in r.stdout
    assert fake_openai.total_requests == sent
    again = json.loads(run_cli("-C", str(demo_dir), "stats", "--json").stdout)
    for key in ("sources", "specs", "dialogues", "turns", "filter"):
        if key == "filter":
            assert again[key]["kept"] == stats[key]["kept"]
        else:
            assert again[key] == stats[key], key
