"""One step of the Agents SDK interop test (tests/api/agent_interop.rs).

Opens the OpenAI Agents SDK's own `RedisSession` on the agent session Switchboard created
and does what argv says, printing the result as JSON on stdout:

  read [limit]      get_items(limit)
  add <json list>   add_items(items)
  pop               pop_item()
  clear             clear_session()
  run <text>        Runner.run(agent, text, session=...) against OPENAI_BASE_URL (a fake)

Environment: REDIS_URL, KEY_PREFIX, AGENT_SESSION_ID; `run` also OPENAI_BASE_URL.
"""

import asyncio
import json
import os
import sys

from agents import Agent, Runner, set_default_openai_client, set_tracing_disabled
from agents.extensions.memory import RedisSession
from openai import AsyncOpenAI


async def main() -> int:
    session = RedisSession.from_url(
        os.environ["AGENT_SESSION_ID"],
        url=os.environ["REDIS_URL"],
        key_prefix=os.environ["KEY_PREFIX"],
    )
    op, args = sys.argv[1], sys.argv[2:]
    try:
        if op == "read":
            limit = int(args[0]) if args else None
            out = await session.get_items(limit)
        elif op == "add":
            await session.add_items(json.loads(args[0]))
            out = None
        elif op == "pop":
            out = await session.pop_item()
        elif op == "clear":
            await session.clear_session()
            out = None
        elif op == "run":
            set_tracing_disabled(True)
            set_default_openai_client(
                AsyncOpenAI(base_url=os.environ["OPENAI_BASE_URL"], api_key="sk-fake", max_retries=0),
                use_for_tracing=False,
            )
            agent = Agent(name="helper", instructions="Answer briefly.", model="gpt-4.1-mini")
            result = await Runner.run(agent, args[0], session=session)
            out = result.final_output
        else:
            print(f"unknown op {op}", file=sys.stderr)
            return 2
    finally:
        await session.close()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
