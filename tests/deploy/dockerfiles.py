"""Reading the Dockerfiles the way Docker does, for tests that run what the images run."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from harness import REPO


@dataclass
class Dockerfile:
    path: Path
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, rest), final stage

    @classmethod
    def read(cls, name: str) -> Dockerfile:
        path = REPO / name
        logical: list[str] = []
        pending = ""
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if line.startswith("#") or (not line and not pending):
                continue
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            logical.append(pending + line)
            pending = ""
        found = cls(path)
        for line in logical:
            word, _, rest = line.partition(" ")
            if word.upper() == "FROM":
                found.instructions = []  # only the final stage matters
            found.instructions.append((word.upper(), rest.strip()))
        return found

    def all(self, instruction: str) -> list[str]:
        return [rest for word, rest in self.instructions if word == instruction]

    def last(self, instruction: str) -> str:
        found = self.all(instruction)
        assert found, f"{self.path.name} has no {instruction}"
        return found[-1]

    def args(self) -> dict[str, str]:
        """ARG defaults."""
        out = {}
        for rest in self.all("ARG"):
            name, _, default = rest.partition("=")
            out[name] = default
        return out

    def env(self, build_args: dict[str, str] | None = None) -> dict[str, str]:
        """ENV as the image has it, with ${VAR} / ${VAR:+word} substituted from ARG and earlier ENV."""
        values = {**self.args(), **(build_args or {})}
        env: dict[str, str] = {}
        for rest in self.all("ENV"):
            for pair in shlex.split(rest):
                name, _, value = pair.partition("=")
                env[name] = values[name] = _substitute(value, values)
        return env

    def exec_form(self, instruction: str) -> list[str]:
        """CMD / ENTRYPOINT in exec (JSON) form; HEALTHCHECK's command after its options."""
        rest = self.last(instruction)
        if instruction == "HEALTHCHECK":
            rest = rest[rest.index("CMD ") + 4 :]
        return json.loads(rest)

    def copies(self) -> list[tuple[str, str]]:
        """(source, destination) of each COPY from the build context."""
        out = []
        for rest in self.all("COPY"):
            parts = [p for p in shlex.split(rest) if not p.startswith("--")]
            out += [(src, parts[-1]) for src in parts[:-1]]
        return out

    def workdir(self) -> str:
        return self.last("WORKDIR")


def _substitute(value: str, values: dict[str, str]) -> str:
    out, i = "", 0
    while i < len(value):
        if value.startswith("${", i):
            end = value.index("}", i)
            expr = value[i + 2 : end]
            if ":+" in expr:
                name, word = expr.split(":+", 1)
                out += word if values.get(name) else ""
            elif ":-" in expr:
                name, word = expr.split(":-", 1)
                out += values.get(name) or word
            else:
                out += values.get(expr, "")
            i = end + 1
        else:
            out += value[i]
            i += 1
    return out
