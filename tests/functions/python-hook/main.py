# A hook function (docs/api.md, Hooks). As a pre hook: rejects an event with "forbidden",
# rewrites one with "rewrite" (the name becomes "rewritten-<name>"), allows the rest. As a post
# hook: returns what it saw (its execution's result is the record a test reads); as a
# redacting post hook: replaces the result with {"redacted": true, "was": <the result>}.


def handler(event, context):
    hook = event["hook"]
    if hook["kind"] == "pre":
        seen = event["event"] or {}
        if seen.get("forbidden"):
            return {"action": "reject", "reason": "forbidden events are not allowed here"}
        if seen.get("rewrite"):
            return {"action": "rewrite", "event": {"name": "rewritten-" + seen.get("name", "")}}
        return {"action": "allow"}
    if hook.get("redact"):
        return {"action": "replace", "result": {"redacted": True, "was": event["result"]}}
    return {
        "saw": {
            "event": event["event"],
            "result": event["result"],
            "error": event["error"],
            "execution": event["execution"],
            "invocation": event["invocation"],
        }
    }
