"""Hidden states of the frozen course model for every review of the whole-review pool (one forward pass each).

    python benchmarks/whole_review_features.py     # writes runs/whole_reviews/features_layers.pt

Per text of runs/whole_reviews/{train,heldout}.jsonl (start + response), of <|endoftext|> text <|endoftext|>:
for every layer k (0 = embeddings), its hidden states through the final layer norm, summed over the real
tokens and at the last real token: what a reward model cut after k blocks would feed its head.
"""

import json
from pathlib import Path

import torch
from tqdm.auto import tqdm

from rlhf_lib.lm import position_ids_from_mask
from rlhf_lib.reward_model import encode, make_reward_model

ROOT = Path(__file__).resolve().parents[1]
POOL = ROOT / "runs/whole_reviews"


def main(batch_size: int = 128):
    texts = sorted({g["start"] + r for split in ("train", "heldout")
                    for g in map(json.loads, (POOL / f"{split}.jsonl").read_text().splitlines())
                    for r in g["responses"]})
    model, tok = make_reward_model()
    model.eval()
    L, d = model.config.n_layer + 1, model.config.n_embd
    sums, lasts = torch.zeros(len(texts), L, d), torch.zeros(len(texts), L, d)  # per text and layer
    with torch.no_grad():
        for i in tqdm(range(0, len(texts), batch_size), desc="features"):
            ids, m = encode(tok, texts[i : i + batch_size], padding_side="right")
            out = model.transformer(input_ids=ids, attention_mask=m, position_ids=position_ids_from_mask(m),
                                    output_hidden_states=True)
            # layer k's states through the final layer norm, as a reward model cut after k blocks would read them
            hs = [model.transformer.ln_f(h) for h in out.hidden_states[:-1]] + [out.hidden_states[-1]]
            h = torch.stack(hs, 1)  # (B, L, T, d)
            sums[i : i + len(ids)] = (h * m[:, None, :, None]).sum(2)
            lasts[i : i + len(ids)] = h[torch.arange(len(ids)), :, m.sum(1) - 1]
    torch.save(dict(texts=texts, sums=sums, lasts=lasts), POOL / "features_layers.pt")


if __name__ == "__main__":
    main()
