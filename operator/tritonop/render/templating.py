"""jinja2 templates to plain dicts, with user values embedded so they can never become YAML.

Templates are YAML text with placeholders. Every placeholder goes through the `toyaml` filter
(a `tojson`-style filter): it turns a value into ONE YAML flow node in which every string is a
double-quoted scalar with everything outside printable ASCII escaped. A model name such as
`m"\n  privileged: true` therefore stays one string and cannot add keys, documents or
anchors. jinja's own `tojson` is not used because PyYAML decodes the surrogate pairs JSON uses
for characters beyond U+FFFF into two broken code points, and because unescaped U+2028 inside
a YAML double-quoted scalar is folded as a line break.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import jinja2
import yaml

# libyaml's loader is several times faster than the pure-Python one and reads the same YAML;
# rendering runs on every reconcile of every service, so it is worth it when installed.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def yaml_quote(text: str) -> str:
    """A YAML double-quoted scalar for `text`, using only printable ASCII."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def to_yaml_flow(value: Any) -> str:
    """One YAML flow node for plain data (None, bool, int, float, str, mappings, sequences)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot render non-finite number {value!r} into a manifest")
        text = repr(value)
        # YAML 1.1 (PyYAML) reads 1e-05 as a string: a float needs a dot in its mantissa.
        if "e" in text and "." not in text:
            mantissa, exponent = text.split("e")
            text = f"{mantissa}.0e{exponent}"
        return text
    if isinstance(value, str):
        return yaml_quote(value)
    if isinstance(value, Mapping):
        # Explicit keys ("? "): YAML caps implicit keys at 1024 characters, escapes included.
        items = (f"? {yaml_quote(str(key))}: {to_yaml_flow(item)}" for key, item in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(to_yaml_flow(item) for item in value) + "]"
    raise TypeError(f"cannot render {type(value).__name__} into a manifest")


@lru_cache(maxsize=1)
def template_environment() -> jinja2.Environment:
    """The shared jinja2 environment: package templates, strict undefined, `toyaml` filter.

    StrictUndefined turns a misspelt placeholder into an error instead of an empty field.
    """
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("tritonop", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # YAML, not HTML: escaping is toyaml's job
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # Package data never changes while the process runs: no stat() of the template file on
        # every render of every service.
        auto_reload=False,
    )
    environment.filters["toyaml"] = to_yaml_flow
    return environment


def render_manifest(template_name: str, context: Mapping[str, Any]) -> dict[str, Any]:
    """Render one template from operator/tritonop/templates and load it as one object."""
    text = template_environment().get_template(template_name).render(**context)
    manifest = yaml.load(text, Loader=_Loader)  # a safe loader: C or Python
    if not isinstance(manifest, dict):
        raise ValueError(f"template {template_name} did not render a single mapping")
    return manifest


def manifests_to_yaml(manifests: Sequence[Mapping[str, Any]]) -> str:
    """Objects as a multi-document YAML stream, block style, keys in rendered order.

    Used for golden files and `tritonop render`: the same objects always give the same bytes.
    """
    return yaml.safe_dump_all(
        [dict(manifest) for manifest in manifests],
        sort_keys=False,
        default_flow_style=False,
        width=100,
        allow_unicode=False,
    )
