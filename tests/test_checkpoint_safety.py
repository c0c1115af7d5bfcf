"""Training checkpoints cannot run code: every file is a safetensors tensor tree, checked by its bytes
before anything is parsed; a pickle planted in any checkpoint file never runs (the checkpoint is
refused and listed, training falls back and still ends with the bit-identical adapter); every ZeRO
stage, fp32 and bf16, resumes exactly through the pickle-free engine."""

from __future__ import annotations

import json
import math
import pickle
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from lloco_core.errors import StoreError
from lloco_core.training.finetune import FinetuneConfig, finetune
from lloco_core.training.tensor_tree import load_tree, save_tree
from tests.finetune_helpers import make_corpus


class Payload:
    """Unpickling this writes `marker`: the proof that a load ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('payload ran')",))


def plant_torch_save(path: Path, marker: Path) -> None:
    """What DeepSpeed's own engine would read: a torch.save zip whose pickle holds the payload."""
    torch.save({"module": Payload(marker)}, path)


def test_payload_runs_when_unpickled(tmp_path: Path) -> None:
    """Control: the planted files below do run code under torch.load(weights_only=False)."""
    marker = tmp_path / "ran"
    plant_torch_save(tmp_path / "x.pt", marker)
    torch.load(tmp_path / "x.pt", weights_only=False)
    assert marker.exists()


def test_tree_round_trip_is_exact(tmp_path: Path) -> None:
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    shared = torch.randn(3, 4)
    tree = {
        "module": {"w": torch.randn(2, 3).to(torch.bfloat16), "v": shared[:, 1], "flat": shared.view(-1), "tail": shared.view(-1)[4:]},
        "state": {0: {"step": torch.tensor(7.0), "exp_avg": shared}, 1: {"same": shared}},
        "param_groups": [{"betas": (0.9, 0.999), "lr": 2e-5, "params": [0, 1], "foreach": None, "amsgrad": False}],
        "shapes": [{"a.weight": torch.Size([4, 2])}],
        "names": {"x", "y"},
        "floats": [math.inf, -math.inf, 1 / 3],
        "stage": ZeroStageEnum.gradients,
        "scaler": DynamicLossScaler(init_scale=2**16, scale_window=1000, min_scale=1, delayed_shift=2, consecutive_hysteresis=False, dtype=torch.bfloat16),
        "fragments": [fragment_address(numel=12, start=4)],
        "rng": torch.get_rng_state(),
        "empty": torch.zeros(0, 5),
        "text": "curve",
    }
    save_tree(tree, tmp_path / "s")
    got = load_tree(tmp_path / "s")
    assert torch.equal(got["module"]["w"], tree["module"]["w"]) and got["module"]["w"].dtype == torch.bfloat16
    assert torch.equal(got["module"]["v"], shared[:, 1]) and torch.equal(got["module"]["flat"], shared.view(-1)) and torch.equal(got["module"]["tail"], shared.view(-1)[4:])
    assert got["state"][0]["exp_avg"] is got["state"][1]["same"] and torch.equal(got["state"][0]["exp_avg"], shared)
    assert got["param_groups"] == tree["param_groups"] and isinstance(got["param_groups"][0]["betas"], tuple)
    assert got["shapes"] == tree["shapes"] and isinstance(got["shapes"][0]["a.weight"], torch.Size)
    assert got["names"] == {"x", "y"} and got["floats"][:2] == [math.inf, -math.inf] and got["floats"][2] == 1 / 3
    assert got["stage"] is ZeroStageEnum.gradients
    assert type(got["scaler"]) is DynamicLossScaler and vars(got["scaler"]) == vars(tree["scaler"])
    assert got["fragments"] == [fragment_address(numel=12, start=4)]
    assert torch.equal(got["rng"], tree["rng"]) and got["empty"].shape == (0, 5) and got["text"] == "curve"


def test_saving_an_unknown_object_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"Payload at state\['x'\]"):
        save_tree({"x": Payload(tmp_path / "m")}, tmp_path / "s")


def _tree_file(path: Path, skeleton: Any, tensors: dict[str, torch.Tensor] | None = None) -> None:
    save_file(tensors or {}, str(path), metadata={"lloco.format": "lloco-tensor-tree/1", "lloco.tree": json.dumps(skeleton)})


def _hostile(kind: str, path: Path, marker: Path) -> None:
    good = path.with_name("good")
    save_tree({"w": torch.ones(64)}, good)
    data = good.read_bytes()
    if kind == "pickle":
        path.write_bytes(pickle.dumps({"w": Payload(marker)}))
    elif kind == "torch.save zip":
        plant_torch_save(path, marker)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(data[:-10])
    elif kind == "padded":
        path.write_bytes(data + b"\0" * 8)
    elif kind == "header not JSON":
        path.write_bytes(struct.pack("<Q", 8) + b"{nope!!}")
    elif kind == "plain safetensors":
        save_file({"w": torch.ones(2)}, str(path))
    elif kind == "class not allowed":
        _tree_file(path, {"object": ["os.system", {"dict": []}]})
    elif kind == "enum not allowed":
        _tree_file(path, {"enum": ["subprocess.Popen", "touch x"]})
    elif kind == "dtype not a dtype":
        _tree_file(path, {"dtype": "load"})
    elif kind == "unhashable key":
        _tree_file(path, {"dict": [[{"list": []}, 1]]})
    elif kind == "bad enum value":
        _tree_file(path, {"enum": ["deepspeed.runtime.zero.config.ZeroStageEnum", 99]})
    elif kind == "missing tensor":
        _tree_file(path, {"tensor": 3})
    elif kind == "deep nesting":  # json.loads would hit RecursionError
        deep = '{"list":[' * 200_000 + "]}" * 200_000
        body = json.dumps({"__metadata__": {"lloco.format": "lloco-tensor-tree/1", "lloco.tree": deep}}).encode()
        path.write_bytes(struct.pack("<Q", len(body)) + body)
    else:
        raise AssertionError(kind)


HOSTILE = ["pickle", "torch.save zip", "empty", "truncated", "padded", "header not JSON", "plain safetensors", "class not allowed", "enum not allowed", "dtype not a dtype", "unhashable key", "bad enum value", "missing tensor", "deep nesting"]


@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_state_file_is_refused_by_name_and_runs_nothing(tmp_path: Path, kind: str) -> None:
    from lloco_core.training.ds_checkpoint_engine import SafetensorsCheckpointEngine

    marker = tmp_path / "ran"
    path = tmp_path / "mp_rank_00_model_states.pt"
    _hostile(kind, path, marker)
    for load in (load_tree, SafetensorsCheckpointEngine().load):  # the library and DeepSpeed's entry point
        with pytest.raises(StoreError) as err:
            load(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()


# every ZeRO stage, fp32 and bf16: save, reload into a fresh engine, continue: bit-identical -----------
def _engine(stage: int, bf16: bool) -> Any:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM, get_cosine_schedule_with_warmup

    from lloco_core.training import engine as ds

    env = ds.prepare_environment(False)
    ds.init_distributed(env, False)
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2, vocab_size=64)
    model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.1, task_type="CAUSAL_LM"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    scheduler = get_cosine_schedule_with_warmup(optimizer, 2, 20)
    return ds.initialize(model, optimizer, scheduler, ds.deepspeed_config(1, 2, 1, stage, bf16, 1.0))


def _steps(engine: Any, n: int) -> None:
    for i in range(n):
        ids = torch.randint(0, 64, (1, 12), generator=torch.Generator().manual_seed(i))
        out = engine(input_ids=ids, labels=ids)
        engine.backward(out.loss)
        engine.step()


def _lora(engine: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().float().clone() for k, v in engine.module.state_dict().items() if "lora_" in k}


@pytest.mark.parametrize("stage,bf16", [(0, True), (1, False), (2, True), (3, True)])
def test_every_zero_stage_resumes_bit_identically(tmp_path: Path, stage: int, bf16: bool) -> None:
    from lloco_core.training.engine import rng_state, set_rng_state

    first = _engine(stage, bf16)
    _steps(first, 6)
    first.save_checkpoint(str(tmp_path), tag="t", client_state={"rng": rng_state()}, save_latest=False, exclude_frozen_parameters=True)
    files = sorted(p.name for p in (tmp_path / "t").iterdir())
    assert files and all((tmp_path / "t" / f).read_bytes()[8:9] == b"{" for f in files), files  # safetensors, no zip/pickle
    _steps(first, 6)
    want = _lora(first)

    second = _engine(stage, bf16)
    _, client = second.load_checkpoint(str(tmp_path), tag="t", load_module_strict=False)
    set_rng_state(client["rng"])
    _steps(second, 6)
    got = _lora(second)
    assert want.keys() == got.keys() and want
    for name in want:
        assert torch.equal(got[name], want[name]), name


@pytest.mark.parametrize("stage", [0, 2, 3])
def test_deepspeed_load_of_a_planted_checkpoint_runs_nothing(tmp_path: Path, stage: int) -> None:
    """A loop that calls engine.load_checkpoint itself (no CheckpointStore) is protected too, for
    every file each ZeRO stage writes (stage 3 partitions the module states as well)."""
    engine = _engine(stage, False)
    _steps(engine, 2)
    engine.save_checkpoint(str(tmp_path), tag="t", save_latest=False, exclude_frozen_parameters=True)
    marker = tmp_path / "ran"
    for path in sorted((tmp_path / "t").iterdir()):
        saved = path.read_bytes()
        plant_torch_save(path, marker)
        with pytest.raises(StoreError, match=path.name):
            engine.load_checkpoint(str(tmp_path), tag="t", load_module_strict=False)
        path.write_bytes(saved)
    assert not marker.exists()


# the finetune loop: a payload in each committed checkpoint file ---------------------------------------
SETTINGS = dict(learning_rate=5e-3, epochs=4, checkpoint_every=3, lora_dropout=0.05, device="cpu")


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def interrupted(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A store with a committed checkpoint at step 3 and no finished adapter (a run stopped there)."""
    work = tmp_path_factory.mktemp("ckpt-safety")
    model = tiny_model  # no learning is checked here, only what resuming reads
    root = work / "store"
    qa = make_corpus(str(root), model, work)

    def stop_at_checkpoint(event: dict[str, Any]) -> None:
        if event["event"] == "checkpoint":
            raise Interrupt

    config = FinetuneConfig(root=str(root), corpus="c", qa=str(qa), model=str(model), **SETTINGS)
    with pytest.raises(Interrupt):
        finetune(config, on_progress=stop_at_checkpoint)
    return {"root": root, "config": config}


def _resume(interrupted: dict[str, Any], root: Path, plant: Any) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    shutil.copytree(interrupted["root"], root)
    folder = next(root.glob("c/adapters/*/checkpoints/step-000003"))
    plant(folder)
    summary = finetune(interrupted["config"].model_copy(update={"root": str(root)}))
    return summary, load_file(Path(summary["adapter_uri"], "adapter_model.safetensors"))


@pytest.mark.slow
def test_payload_in_each_checkpoint_file_never_runs(interrupted: dict[str, Any], tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    named = ["mp_rank_00_model_states.safetensors", "zero_pp_rank_0_mp_rank_00_optim_states.safetensors"]

    def beside(folder: Path) -> None:  # pickles next to the files the commit record names: never read
        assert sorted(p.name for p in folder.iterdir()) == named
        plant_torch_save(folder / "latest.pt", marker)
        plant_torch_save(folder / "zero_pp_rank_1_mp_rank_00_optim_states.safetensors", marker)

    def in_each(folder: Path) -> None:
        for name in named:
            plant_torch_save(folder / name, marker)

    clean, clean_adapter = _resume(interrupted, tmp_path / "beside", beside)
    assert clean["resumed_from_step"] == 3 and clean["checkpoints_refused"] == []

    summary, adapter = _resume(interrupted, tmp_path / "planted", in_each)
    assert not marker.exists()
    (refused,) = summary["checkpoints_refused"]
    assert refused["checkpoint"].endswith("step-000003") and all(f"{name}: refusing to load" in refused["reason"] for name in named), refused
    assert "zip archive" in refused["reason"] and summary["resumed_from_step"] == 0  # started over ...
    assert adapter.keys() == clean_adapter.keys() and all(torch.equal(adapter[k], clean_adapter[k]) for k in adapter)  # ... to the same bits
