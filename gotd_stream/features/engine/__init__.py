"""The fast embedding path: tokenise in worker processes, bucket by length, batch by tokens, overlap every stage.

`SentenceTransformer.encode` leaves a GPU mostly idle: it tokenises, pads and loops in Python between forward
passes, and sorts by length only inside one call. Here, for one window of documents at a time (a window never
spans two inputs: see select.score.windows):

1. a reader thread pulls windows from the caller and hands their texts, in chunks, to tokenizer workers (or
   tokenises inline with `workers=0`); the workers also compute a side feature (the lexical part of the hybrid
   space) on the same texts, so it costs the main process nothing;
2. a packer thread sorts the window by token length (longest first, ties by position), cuts it into batches of
   at most `batch_tokens` padded tokens, and pads each batch into (pinned, on CUDA) host tensors;
3. the forward stage (a thread of its own on a GPU, the caller's thread on the CPU) copies batches to the device
   (non-blocking), runs the model's own module chain (so any Pooling/Dense/Normalize of the folder applies),
   restores input order and L2-normalises in float32;
4. the caller consumes (window, embeddings, side features) while the next windows are being read and tokenised.

Bounded queues keep at most a few windows in flight, so memory does not grow with the corpus. The batches of a
window depend only on that window's texts (never on timing, chunking or worker count), so results are the same
bits whatever `workers` is, and a shard scores the same alone or among others.

The parts, one idea each:

    workers.py    tokenising, the same code inline and in the worker processes; how many workers
    batches.py    a window's texts sorted by length and cut into batches of at most `batch_tokens` padded tokens
    pipeline.py   stages as threads joined by bounded queues (a failure travels to the consumer); prefetch
    runners.py    the two model runners: Engine (a transformer: padded batches) and BagEngine (a static model:
                  the mean of token rows per window, in numpy)
"""
