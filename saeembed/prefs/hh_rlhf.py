"""HH-RLHF dialogues: splitting a chosen/rejected pair of whole conversations into the shared
prompt and each side's final reply. Both readers of such pairs use it: the `hh-rlhf-harmless`
named dataset (`saeembed.data`) and pair files without a prompt column (`saeembed.prefs.pairs`)."""

from __future__ import annotations

import os

ASSISTANT_MARK = "\n\nAssistant:"


def split_dialogue(chosen: str, rejected: str) -> tuple[str, str, str, bool]:
    """(prompt, chosen reply, rejected reply, same_prompt) of one HH-RLHF pair.

    Common case: both conversations are identical up to and including their last
    "\\n\\nAssistant:"; that is the prompt and the rest of each is its final reply. Otherwise (5 of
    2,312 pairs) the prompt is the longest common prefix cut back to just after the last
    "\\n\\nAssistant:" inside it, and each side keeps everything after that (possibly more turns).
    """
    end_c, end_r = chosen.rfind(ASSISTANT_MARK), rejected.rfind(ASSISTANT_MARK)
    if end_c >= 0 and end_c == end_r and chosen[:end_c] == rejected[:end_r]:
        end = end_c + len(ASSISTANT_MARK)
        return chosen[:end], chosen[end:].strip(), rejected[end:].strip(), True
    common = len(os.path.commonprefix([chosen, rejected]))
    cut = chosen.rfind(ASSISTANT_MARK, 0, common)
    end = cut + len(ASSISTANT_MARK) if cut >= 0 else 0
    return chosen[:end], chosen[end:].strip(), rejected[end:].strip(), False
