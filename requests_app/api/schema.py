"""drf-spectacular postprocessing: the generated schema made exact for OpenAPI 3.0 validators."""

import json

NULLABLE_PREFIX = "Nullable"


def nullable_references(result, generator, request, public):
    """A field that is an object or null gets a `$ref` to a nullable copy of the object's component.

    drf-spectacular writes such a field (`fee`, `portability_recipient`) as `{"allOf": [{"$ref": "…/Fee"}],
    "nullable": true}`. In OpenAPI 3.0.3 `nullable` only counts beside a `type`, which that schema has not, and
    `Fee` itself refuses null: a strict validator (openapi-core's) rejected nearly every request, whose `fee` is null.
    A copy of `Fee` with `"nullable": true` next to its `"type": "object"`, `NullableFee`, says it in 3.0's terms.
    """
    components = result.get("components", {}).get("schemas", {})
    copied = set()

    def rewrite(node):
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        if not isinstance(node, dict):
            return node
        node = {key: rewrite(value) for key, value in node.items()}
        references = node.get("allOf", [])
        if node.get("nullable") and "type" not in node and len(references) == 1 and "$ref" in references[0]:
            name = references[0]["$ref"].rpartition("/")[2]
            nullable_name = NULLABLE_PREFIX + name
            copied.add(name)
            components.setdefault(nullable_name, {**rewrite(components[name]), "nullable": True})
            del node["nullable"]
            node["allOf"] = [{"$ref": f"#/components/schemas/{nullable_name}"}]
        return node

    result["paths"] = rewrite(result["paths"])
    for name in list(components):
        components[name] = rewrite(components[name])
    # An object only ever given as "or null" (Fee) would be listed twice in the docs, once never used.
    text = json.dumps(result)
    for name in copied:
        if f'"#/components/schemas/{name}"' not in text:
            del components[name]
    result["components"]["schemas"] = dict(sorted(components.items()))  # the copies listed with the others
    return result
