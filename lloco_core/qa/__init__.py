"""Questions over a compressed corpus: prompts, QA data, retrieval, answering, evaluation, metrics."""
