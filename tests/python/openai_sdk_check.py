"""Drive Switchboard's /api/responses proxy with the official openai SDK.

Run by tests/api/python_sdk.rs against a fake upstream; prints one line per check and
exits non-zero on any mismatch.
"""

import os
import sys
from typing import Literal

from openai import OpenAI
from pydantic import BaseModel


class Verdict(BaseModel):
    moderationRationale: str
    moderationCategory: Literal["OFFENSIVE", "OFF_BRAND", "VIOLENCE", "NONE"]


def main() -> int:
    client = OpenAI(base_url=os.environ["SWITCHBOARD_BASE_URL"], max_retries=0, timeout=20)

    created = client.responses.create(model="gpt-4.1-mini", input="Say hello")
    assert created.id == "resp_test_1", created.id
    assert created.output_text == "Hello from the fake upstream", created.output_text
    print(f"create ok: {created.output_text}")

    parsed = client.responses.parse(
        model="gpt-4o-mini",
        input=[{"role": "user", "content": "Classify: hello"}],
        text_format=Verdict,
    )
    verdict = parsed.output_parsed
    assert isinstance(verdict, Verdict), type(verdict)
    assert verdict.moderationCategory == "NONE", verdict
    print(f"parse ok: {verdict.moderationCategory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
