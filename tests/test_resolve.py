"""One resolver (resolve.py): the task's defaults < a TOML file < the flags, sorted by owner."""

import json

import pytest

from tinyllm.errors import ConfigError, UsageError
from tinyllm.resolve import resolve
from tinyllm.rundir import RunDirectory


def test_each_layer_overrides_the_one_before(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('n_layer = 2\nmax_time = "2m"\nlr = 1e-3\ncpu_matmul = "default"\nlowercase = false\n')
    settings = resolve("shakespeare", {"n_layer": 4}, config_file=str(toml))
    assert settings.model["n_layer"] == 4  # the flag beats the file
    assert settings.model["n_embd"] == 96  # the task's default, untouched
    assert settings.train.max_time == 120.0 and settings.train.lr == 1e-3  # the file beats the task
    assert settings.train.optimizer == "muon"  # the task's default beats TrainConfig's
    assert settings.speed.cpu_matmul == "default" and settings.speed.muon_dtype == "auto"
    assert settings.task.task_options == {"lowercase": False}


@pytest.mark.parametrize(
    "given, error, words",
    [
        ({"digits": 3}, UsageError, "--digits is an option of the addition task, not of shakespeare"),
        ({"n_layers": 3}, UsageError, "unknown setting 'n_layers'"),
        ({"cpu_matmul": "onednn", "dtype": "bfloat16"}, ConfigError, "cpu_matmul onednn is for eager float32"),
        ({"muon_dtype": "half"}, ConfigError, "muon_dtype"),
    ],
)
def test_a_misplaced_or_unknown_setting_is_a_clear_error(given, error, words):
    with pytest.raises(error, match=words):
        resolve("shakespeare", given)


def test_a_resumed_run_keeps_its_settings_and_reads_old_config_files(tmp_path):
    run = RunDirectory(tmp_path / "run")
    (tmp_path / "run").mkdir()
    saved = resolve("shakespeare", {"n_layer": 2, "lr": 2e-3})
    train = saved.train.to_dict()
    train.update(cpu_matmul="default", muon_dtype="float32")  # where runs saved before speed/ kept them
    config = {"format_version": 1, "task": "shakespeare", "task_options": {"lowercase": True}, "model": saved.model}
    config["train"] = train
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    (tmp_path / "run" / "tokenizer.json").write_text(json.dumps({"type": "char", "chars": "ab", "lowercase": True}))
    resumed = resolve("shakespeare", {"max_iters": 50}, resume_from=run)
    assert resumed.model["n_layer"] == 2 and resumed.train.lr == 2e-3 and resumed.train.max_iters == 50
    assert resumed.speed.cpu_matmul == "default" and resumed.speed.muon_dtype == "float32"
    with pytest.raises(UsageError, match="cannot change n_layer when resuming"):
        resolve("shakespeare", {"n_layer": 3}, resume_from=run)
    with pytest.raises(UsageError, match="a run of task 'shakespeare', not 'text'"):
        resolve("text", {}, resume_from=run)
