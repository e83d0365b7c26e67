import json
import os


def lambda_handler(event, context):
    """An unmodified AWS Lambda handler (API Gateway proxy style)."""
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(
            {
                "request_id": context.aws_request_id,
                "function_name": context.function_name,
                "function_version": context.function_version,
                "memory_limit_in_mb": int(context.memory_limit_in_mb),
                "arn": context.invoked_function_arn,
                "remaining_ms": context.get_remaining_time_in_millis(),
                "log_group": context.log_group_name,
                "env_greeting": os.environ.get("GREETING"),
                "runtime_api": os.environ.get("AWS_LAMBDA_RUNTIME_API"),
                "event": event,
            }
        ),
    }
