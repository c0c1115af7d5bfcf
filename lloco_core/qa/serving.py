"""Export a request's decoder input for a serving engine: vLLM's `prompt_embeds`.

vLLM (`--enable-prompt-embeds`) takes a prompt as a `[seq, hidden]` tensor of input embeddings;
LLoCO's input is exactly that: `[ summary vectors ; embed(prompt tokens) ]`, the very tensor the
decoder reads in `lloco ask` (`Answerer.prepare`), no BOS with the paper's prompt set. The tensor is
written as safetensors (key `prompt_embeds`) beside the corpus's PEFT adapter, under
`<adapter>/requests/<request-key>.safetensors`, so a vLLM server started with the same base model
and `--enable-lora` serves the answer. See docs/serving.md.
"""

from __future__ import annotations

import json
from typing import Any

from safetensors.torch import save

from lloco_core.fingerprint import stable_hash
from lloco_core.qa.answer import Answerer, ask_answerer, ask_question, documents_read
from lloco_core.qa.config import AskConfig

TENSOR_KEY = "prompt_embeds"


def export_prompt_embeds(config: AskConfig, out: str | None = None, answerer: Answerer | None = None) -> dict[str, Any]:
    """Write one request's prompt embeddings; returns where, the shape, and how to serve it."""
    answerer = answerer or ask_answerer(config)
    question = ask_question(config)
    prepared = answerer.prepare(question)
    tensor = prepared.embeds.detach().to("cpu").contiguous()
    adapter = answerer.adapter
    key = "req-" + stable_hash({"q": question.__dict__, "adapter": adapter.key if adapter else None, "encoder": answerer.encoder_key,
                                "max_segments": config.max_segments, "top_k": config.top_k, "dtype": str(tensor.dtype), "prompt_set": answerer.prompts.name})
    metadata = {
        "question": config.question,
        "doc_id": config.doc_id or "",
        "segments": json.dumps([[k.doc_id, k.segment_index] for k in prepared.segments]),
        "prompt_ids": json.dumps(prepared.prompt_ids),
        "prompt_set": answerer.prompts.name,
        "adapter_key": adapter.key if adapter else "",
        "encoder_key": answerer.encoder_key,
        "base_model": answerer.model_path,
        "shape": json.dumps(list(tensor.shape)),
        "dtype": str(tensor.dtype).removeprefix("torch."),
    }
    data = save({TENSOR_KEY: tensor}, metadata=metadata)
    store = answerer.store
    if out is None:
        base = store.path(config.corpus, "adapters", adapter.key) if adapter else store.path(config.corpus, "serving", "base")
        path = f"{base}/requests/{key}.safetensors"
        store.write_bytes(path, data)
        uri = store.uri(path)
    else:
        from lloco_core.store.storage import open_url

        with open_url(out, "wb", config.endpoint_url) as f:
            f.write(data)
        uri = out
    return {
        "prompt_embeds": uri,
        "shape": list(tensor.shape),
        "dtype": metadata["dtype"],
        "summary_vectors": prepared.positions - len(prepared.prompt_ids),
        "prompt_tokens": len(prepared.prompt_ids),
        "documents": documents_read(prepared.segments, prepared.segments_total),
        "adapter_uri": adapter.uri if adapter else None,
        "base_model": answerer.model_path,
        "serve": vllm_command(answerer.model_path, adapter.key if adapter else None, adapter.uri if adapter else None, max(answerer.window, tensor.shape[0] + config.max_new_tokens)),
    }


def vllm_command(base_model: str, adapter_key: str | None, adapter_uri: str | None, window: int) -> str:
    """The `vllm serve` line for this base model and adapter (adapter folder must be local to the server)."""
    command = f"vllm serve {base_model} --enable-prompt-embeds --max-model-len {window}"
    if adapter_key and adapter_uri:
        command += f" --enable-lora --max-lora-rank 64 --lora-modules {adapter_key}={adapter_uri}"
    return command
