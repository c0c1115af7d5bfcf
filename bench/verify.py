"""How long `lloco verify` takes on a compressed corpus (issue 10's closing-note figure).

Builds the tiny test checkpoint, ingests `--docs` short documents, compresses them (shards of
`--shard-size`), then times `verify` (every record, part and shard read and checked against its
sha256 and content) and `verify --repair` on the clean store. Prints one JSON line.

    python bench/verify.py --docs 10000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from lloco_core.config import CompressConfig, IngestConfig
from lloco_core.model.compress import compress
from lloco_core.model.tiny import build_tiny_compressor
from lloco_core.store.documents import ingest
from lloco_core.store.storage import Store
from lloco_core.store.verify import verify
from tests.conftest import make_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--words", type=int, default=60, help="words per document")
    parser.add_argument("--shard-size", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lloco-verify-") as tmp:
        work = Path(tmp)
        model = build_tiny_compressor(work / "model", texts=[make_text(s, 400) for s in range(20)], vocab_size=600)
        source = work / "docs.jsonl"
        source.write_text("".join(json.dumps({"id": f"doc{i:06d}", "text": make_text(i, args.words)}) + "\n" for i in range(args.docs)))
        root = str(work / "root")
        ingest(IngestConfig(root=root, corpus="c", source=str(source)))
        started = time.perf_counter()
        summary = compress(CompressConfig(root=root, corpus="c", model=str(model), device="cpu", shard_size=args.shard_size, batch_size=64))
        compress_s = time.perf_counter() - started
        store = Store(root)
        report = verify(store, "c").as_dict()
        repair = verify(store, "c", repair=True).as_dict()
        size = sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())
        print(json.dumps({
            "docs": args.docs, "segments": summary.segments_written, "store_mb": round(size / 1e6, 1), "files_checked": report["checked"],
            "problems": report["problems"], "verify_seconds": report["seconds"], "verify_repair_seconds": repair["seconds"], "compress_seconds": round(compress_s, 1),
        }))


if __name__ == "__main__":
    main()
