"""A tiny llama model written as GGUF at test time, for a real llama.cpp server to serve.

Random weights (seeded): the answers are gibberish, which is all a wire-format
test needs: what matters is that a real server loads the file, tokenizes a
ChatML prompt and streams tokens back. Two layers, 64 wide, a byte-level
SentencePiece vocabulary (every byte is a token, so any prompt tokenizes) plus
ChatML's two control tokens: about 0.5 MB, written in milliseconds. Nothing of
it is committed; each run writes its own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGUFWriter, TokenType

# ChatML, the template the server renders messages with (tokenizer.chat_template).
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
EMBED = 64
LAYERS = 2
HEADS = 4
FFN = 128
CONTEXT = 512
#: The ids of </s> and <|im_end|>, either of which ends an answer.
END_TOKENS = (2, 3 + 256 + 8 + 1)
#: The byte tokens 0x80-0xFF: random ones rarely make whole UTF-8 characters, which a
#: server holds back until they do (ban them for an answer that streams steadily).
NON_ASCII_BYTES = tuple(range(3 + 0x80, 3 + 0x100))


def _vocab() -> tuple[list[bytes], list[float], list[int]]:
    tokens = [b"<unk>", b"<s>", b"</s>"]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>".encode() for b in range(256)]
    types += [TokenType.BYTE] * 256
    words = [" the", " a", " order", " refund", " yes", " no", " ok", "."]
    tokens += [w.replace(" ", "\u2581").encode() for w in words]
    types += [TokenType.NORMAL] * len(words)
    tokens += [b"<|im_start|>", b"<|im_end|>"]
    types += [TokenType.CONTROL, TokenType.CONTROL]
    scores = [0.0] * 3 + [-1000.0] * 256 + [-float(i) for i in range(len(words))] + [0.0, 0.0]
    return tokens, scores, [int(t) for t in types]


def write_model(path: Path, seed: int = 7) -> Path:
    """Write the model to ``path`` and return it."""
    rng = np.random.default_rng(seed)
    tokens, scores, types = _vocab()
    n_vocab = len(tokens)

    def weights(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    w = GGUFWriter(str(path), "llama")
    w.add_name("skyroute-tiny-llama")
    w.add_context_length(CONTEXT)
    w.add_embedding_length(EMBED)
    w.add_block_count(LAYERS)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(HEADS)
    w.add_rope_dimension_count(EMBED // HEADS)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(0)  # all f32
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    assert (tokens.index(b"</s>"), tokens.index(b"<|im_end|>")) == END_TOKENS
    w.add_eos_token_id(END_TOKENS[1])
    w.add_unk_token_id(0)
    w.add_add_bos_token(False)
    w.add_chat_template(CHATML)
    w.add_tensor("token_embd.weight", weights(n_vocab, EMBED))
    w.add_tensor("output_norm.weight", np.ones(EMBED, dtype=np.float32))
    w.add_tensor("output.weight", weights(n_vocab, EMBED))
    for i in range(LAYERS):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", np.ones(EMBED, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            w.add_tensor(p + name + ".weight", weights(EMBED, EMBED))
        w.add_tensor(p + "ffn_norm.weight", np.ones(EMBED, dtype=np.float32))
        w.add_tensor(p + "ffn_gate.weight", weights(FFN, EMBED))
        w.add_tensor(p + "ffn_up.weight", weights(FFN, EMBED))
        w.add_tensor(p + "ffn_down.weight", weights(EMBED, FFN))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
