"""Model folders: finding and describing one, and downloading (at huggingface_hub's door)."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from swarm import models
from swarm.cli.models import model as model_cli
from swarm.models import ModelError, ModelNotFound, find_model, model_info

GENAI_CONFIG = {
    "model": {
        "type": "phi3",
        "context_length": 4096,
        "vocab_size": 32064,
        "decoder": {
            "num_hidden_layers": 32,
            "hidden_size": 3072,
            "num_attention_heads": 32,
            "num_key_value_heads": 32,
            "session_options": {"provider_options": [{"cuda": {"enable_cuda_graph": "0"}}]},
        },
    }
}


def fake_model(folder: Path, config: dict[str, Any] = GENAI_CONFIG) -> Path:
    """A folder with a genai_config.json; enough for finding and describing, not for loading."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "genai_config.json").write_text(json.dumps(config))
    (folder / "model.onnx").write_bytes(b"\0" * 1000)
    return folder


def test_explicit_beats_the_environment_beats_the_cache(tmp_path: Path) -> None:
    home = tmp_path / "home"
    pulled = fake_model(home / "models" / "phi3-mini-4k-cpu" / "cpu_and_mobile" / "x")
    mine, env_model = fake_model(tmp_path / "mine"), fake_model(tmp_path / "env")
    env = {"SWARM_HOME": str(home), "SWARM_MODEL": str(env_model)}
    assert find_model(str(mine), env) == mine
    assert find_model(None, env) == env_model
    assert find_model(None, {"SWARM_HOME": str(home)}) == pulled
    # A pulled model can be named instead of pathed.
    assert find_model("phi3-mini-4k-cpu", {"SWARM_HOME": str(home)}) == pulled


def test_no_model_says_exactly_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound) as caught:
        find_model(None, {"SWARM_HOME": str(tmp_path)})
    message = str(caught.value)
    assert "\n" not in message
    assert "swarm model pull" in message
    assert "--model DIR" in message and "SWARM_MODEL" in message
    assert str(tmp_path / "models") in message


def test_a_missing_explicit_model_names_where_it_came_from(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match=r"^SWARM_MODEL=.*gone: no such model folder"):
        find_model(None, {"SWARM_HOME": str(tmp_path), "SWARM_MODEL": str(tmp_path / "gone")})


def test_a_variant_not_yet_pulled_says_how_to_pull_it(tmp_path: Path) -> None:
    with pytest.raises(
        ModelNotFound, match=r"not pulled yet; run `swarm model pull phi3-mini-4k-dml`"
    ):
        find_model("phi3-mini-4k-dml", {"SWARM_HOME": str(tmp_path)})


def test_a_failed_download_says_to_run_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def snapshot_download(**kwargs: Any) -> str:
        raise OSError("connection reset")

    monkeypatch.setattr("huggingface_hub.snapshot_download", snapshot_download)
    with pytest.raises(ModelError, match=r"connection reset\); run the same command again"):
        models.pull("phi3-mini-4k-cpu", tmp_path)


def test_a_folder_without_a_config_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "x.onnx").write_bytes(b"")
    with pytest.raises(ModelError, match="not an ORT GenAI model folder"):
        find_model(str(tmp_path), {})
    file = tmp_path / "x.onnx"
    with pytest.raises(ModelError, match="is a file, not a model folder"):
        find_model(str(file), {})


def test_a_download_root_leads_to_its_one_model(tmp_path: Path) -> None:
    inner = fake_model(tmp_path / "cpu_and_mobile" / "cpu-int4")
    assert find_model(str(tmp_path), {}) == inner


def test_info_reads_the_genai_config(tmp_path: Path) -> None:
    info = model_info(fake_model(tmp_path))
    assert (info.type, info.layers, info.context, info.vocab) == ("phi3", 32, 4096, 32064)
    assert info.providers == ("cuda",)
    text = "\n".join(info.lines())
    assert "layers     32 (hidden 3072, heads 32, kv heads 32)" in text
    assert "context    4096 tokens" in text


def test_info_of_a_broken_config_is_one_line(tmp_path: Path) -> None:
    fake_model(tmp_path, {"model": {"type": "phi3"}})
    with pytest.raises(ModelError, match="is not a valid ORT GenAI config"):
        model_info(tmp_path)


def test_pull_asks_huggingface_hub_for_one_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []

    def snapshot_download(**kwargs: Any) -> str:
        calls.append(kwargs)
        fake_model(
            Path(kwargs["local_dir"]) / "cpu_and_mobile" / "cpu-int4-rtn-block-32-acc-level-4"
        )
        return str(kwargs["local_dir"])

    monkeypatch.setattr("huggingface_hub.snapshot_download", snapshot_download)
    path = models.pull("phi3-mini-4k-cpu", tmp_path)
    assert calls == [
        {
            "repo_id": "microsoft/Phi-3-mini-4k-instruct-onnx",
            "allow_patterns": ["cpu_and_mobile/cpu-int4-rtn-block-32-acc-level-4/*"],
            "local_dir": tmp_path / ".phi3-mini-4k-cpu.partial",
        }
    ]
    assert (
        path
        == tmp_path / "phi3-mini-4k-cpu" / "cpu_and_mobile" / "cpu-int4-rtn-block-32-acc-level-4"
    )
    assert models.installed(tmp_path) == {"phi3-mini-4k-cpu": path}


def test_pull_of_an_unknown_name_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="unknown model 'phi9'; choose one of: phi3-mini-4k-cpu, "):
        models.pull("phi9", tmp_path)


def test_the_cli_pulls_lists_and_describes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def snapshot_download(**kwargs: Any) -> str:
        fake_model(Path(kwargs["local_dir"]) / "cuda" / "cuda-int4-rtn-block-32")
        return str(kwargs["local_dir"])

    monkeypatch.setattr("huggingface_hub.snapshot_download", snapshot_download)
    monkeypatch.setenv("SWARM_HOME", str(tmp_path))
    monkeypatch.delenv("SWARM_MODEL", raising=False)
    runner = CliRunner()
    result = runner.invoke(model_cli, ["pull", "phi3-mini-4k-cuda-int4"])
    assert result.exit_code == 0, result.output
    assert "ready: " in result.output
    result = runner.invoke(model_cli, ["list"])
    assert "phi3-mini-4k-cuda-int4" in result.output.split("available to pull:")[0]
    result = runner.invoke(model_cli, ["info"])
    assert result.exit_code == 0 and "type       phi3" in result.output


def test_the_cli_says_what_is_wrong_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWARM_HOME", str(tmp_path))
    monkeypatch.delenv("SWARM_MODEL", raising=False)
    result = CliRunner().invoke(model_cli, ["info"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: no model found; run `swarm model pull`")
    assert result.output.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "folder"),
    [
        (["--provider", "dml"], "directml/directml-int4-awq-block-128"),
        (["--provider", "cuda"], "cuda/cuda-int4-rtn-block-32"),
        (["--provider", "cpu"], "cpu_and_mobile/cpu-int4-rtn-block-32-acc-level-4"),
        # auto: this machine's runtime has the CPU only
        ([], "cpu_and_mobile/cpu-int4-rtn-block-32-acc-level-4"),
    ],
)
def test_pull_without_a_name_takes_the_build_for_the_provider(
    args: list[str], folder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    def snapshot_download(**kwargs: Any) -> str:
        asked.extend(kwargs["allow_patterns"])
        fake_model(Path(kwargs["local_dir"]) / folder)
        return str(kwargs["local_dir"])

    monkeypatch.setattr("huggingface_hub.snapshot_download", snapshot_download)
    result = CliRunner().invoke(model_cli, ["pull", "--home", str(tmp_path), *args])
    assert result.exit_code == 0, result.output
    assert asked == [f"{folder}/*"]


def test_auto_pull_follows_the_installed_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    from swarm.cli import models as commands

    og = types.SimpleNamespace(is_cuda_available=lambda: False, is_dml_available=lambda: True)
    monkeypatch.setattr(commands, "import_og", lambda: og)
    assert models.FOR_PROVIDER[commands.pull_provider("auto")] == "phi3-mini-4k-dml"
    assert commands.pull_provider("cuda") == "cuda"


def test_a_pull_under_way_is_not_a_model_yet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, Path]] = []

    def snapshot_download(**kwargs: Any) -> str:
        # The config lands before the weights: a worker looking now must not find a model.
        fake_model(
            Path(kwargs["local_dir"]) / "cpu_and_mobile" / "cpu-int4-rtn-block-32-acc-level-4"
        )
        seen.append(models.installed(tmp_path))
        return str(kwargs["local_dir"])

    monkeypatch.setattr("huggingface_hub.snapshot_download", snapshot_download)
    path = models.pull("phi3-mini-4k-cpu", tmp_path)
    assert seen == [{}]
    assert models.installed(tmp_path) == {"phi3-mini-4k-cpu": path}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["phi3-mini-4k-cpu"]


def test_where_pull_cannot_run_the_message_names_what_can(tmp_path: Path) -> None:
    env = {"SWARM_HOME": str(tmp_path), "SWARM_PULL_COMMAND": "docker compose run --rm model pull"}
    with pytest.raises(ModelNotFound, match=r"run `docker compose run --rm model pull` \("):
        find_model(None, env)
    with pytest.raises(
        ModelNotFound, match="not pulled yet; run `docker compose run --rm model pull phi3-mini-4k"
    ):
        find_model("phi3-mini-4k-cpu-acc1", env)
