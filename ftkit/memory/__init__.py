"""Memory tuning and retrieval: two ways to make the assistant answer exact facts (paper §6.5,
§1.9; notebook 11_memory_tuning_and_rag).

- :mod:`ftkit.memory.facts` — the shop's fact base, prompts, answers with their confidence,
  scoring (exact value, hallucination = confident and wrong)
- :mod:`ftkit.memory.retrieval` — encoder, FAISS index, retriever, recall@k
- :mod:`ftkit.memory.tuning` — plain LoRA, the memory-expert bank and its router, one
  evaluation for every way
- :mod:`ftkit.memory.params` — the notebook's parameter section (no torch)
"""
