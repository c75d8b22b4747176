"""Acting on verdicts in Teams: the actor that drains the action outbox and applies each
policyViolation through Microsoft Graph, apart from the notifications' path."""
