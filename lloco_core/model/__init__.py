"""The AutoCompressor: loading checkpoints, segmenting, summarizing, compressing a corpus, the decoder."""
