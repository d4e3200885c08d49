"""Every route the team's MLflow server serves, classified: who may call it, and which
request fields name the resource it touches. ``team.routes`` reads this table; a route
that is not in it is refused to everyone but the admin, and a system test fails when the
live server serves one that is not (an MLflow upgrade adds routes).

One line per route: the least role that may call it, the method, the path as Flask writes
it (``/ajax-api/`` is the same route as ``/api/``), and the kinds of resource its fields
name (``?``: may be absent). Roles, from the least: ``public`` (MLflow answers it before
any login), ``login`` (any user with a password, with a role or not), ``reader``,
``member``, ``maintainer``, ``admin``. Kinds: ``run`` (``run_id``, ``run_uuid``),
``experiment``, ``model`` (a registered model's ``name``), ``version``, ``logged_model``.
"""

TABLE = """
public     GET    /api/3.0/mlflow/server-info
public     GET    /health
public     GET    /static-files/<path:path>
login      GET    /
login      GET    /api/2.0/mlflow/users/current
login      GET    /api/3.0/mlflow/users/current/permissions
login      GET    /build/<path:filename>
login      GET    /version
reader     GET    /api/2.0/mlflow-artifacts/artifacts
reader     GET    /api/2.0/mlflow-artifacts/artifacts/<path:artifact_path>
reader     GET    /api/2.0/mlflow-artifacts/presigned/<path:artifact_path>
reader     GET    /api/2.0/mlflow/artifacts/list  run
reader     GET    /api/2.0/mlflow/experiments/get  experiment
reader     GET    /api/2.0/mlflow/experiments/get-by-name
reader     GET    /api/2.0/mlflow/experiments/search
reader     POST   /api/2.0/mlflow/experiments/search
reader     POST   /api/2.0/mlflow/experiments/search-datasets
reader     GET    /api/2.0/mlflow/get-trace-artifact
reader     GET    /api/2.0/mlflow/logged-models/<model_id>  logged_model
reader     GET    /api/2.0/mlflow/logged-models/<model_id>/artifacts/directories  logged_model
reader     GET    /api/2.0/mlflow/logged-models/<model_id>/artifacts/files  logged_model
reader     POST   /api/2.0/mlflow/logged-models/search
reader     GET    /api/2.0/mlflow/metrics/get-history  run
reader     GET    /api/2.0/mlflow/metrics/get-history-bulk
reader     GET    /api/2.0/mlflow/metrics/get-history-bulk-interval
reader     GET    /api/2.0/mlflow/model-versions/get  model version
reader     GET    /api/2.0/mlflow/model-versions/get-download-uri  model version
reader     GET    /api/2.0/mlflow/model-versions/search
reader     GET    /api/2.0/mlflow/registered-models/alias  model
reader     GET    /api/2.0/mlflow/registered-models/get  model
reader     GET    /api/2.0/mlflow/registered-models/get-latest-versions  model
reader     POST   /api/2.0/mlflow/registered-models/get-latest-versions  model
reader     GET    /api/2.0/mlflow/registered-models/search
reader     GET    /api/2.0/mlflow/runs/get  run
reader     POST   /api/2.0/mlflow/runs/search
reader     GET    /api/2.0/mlflow/traces
reader     GET    /api/2.0/mlflow/traces/<request_id>/info
reader     GET    /api/3.0/mlflow/get-trace-artifact
reader     GET    /api/3.0/mlflow/traces/<trace_id>
reader     GET    /api/3.0/mlflow/traces/batchGet
reader     POST   /api/3.0/mlflow/traces/batchGetInfos
reader     GET    /api/3.0/mlflow/traces/get
reader     POST   /api/3.0/mlflow/traces/metrics
reader     POST   /api/3.0/mlflow/traces/search
reader     GET    /get-artifact  run
reader     GET    /graphql
reader     POST   /graphql
reader     GET    /model-versions/get-artifact  model version
member     PUT    /api/2.0/mlflow-artifacts/artifacts/<path:artifact_path>
member     POST   /api/2.0/mlflow/logged-models  experiment run?
member     PATCH  /api/2.0/mlflow/logged-models/<model_id>  logged_model
member     POST   /api/2.0/mlflow/logged-models/<model_id>/params  logged_model
member     PATCH  /api/2.0/mlflow/logged-models/<model_id>/tags  logged_model
member     DELETE /api/2.0/mlflow/logged-models/<model_id>/tags/<tag_key>  logged_model
member     POST   /api/2.0/mlflow/model-versions/create  model run?
member     DELETE /api/2.0/mlflow/model-versions/delete-tag  model version
member     POST   /api/2.0/mlflow/model-versions/set-tag  model version
member     PATCH  /api/2.0/mlflow/model-versions/update  model version
member     DELETE /api/2.0/mlflow/registered-models/alias  model
member     POST   /api/2.0/mlflow/registered-models/alias  model version
member     DELETE /api/2.0/mlflow/registered-models/delete-tag  model
member     POST   /api/2.0/mlflow/registered-models/set-tag  model
member     PATCH  /api/2.0/mlflow/registered-models/update  model
member     POST   /api/2.0/mlflow/runs/create  experiment
member     POST   /api/2.0/mlflow/runs/delete-tag  run
member     POST   /api/2.0/mlflow/runs/log-batch  run
member     POST   /api/2.0/mlflow/runs/log-inputs  run
member     POST   /api/2.0/mlflow/runs/log-metric  run
member     POST   /api/2.0/mlflow/runs/log-model  run
member     POST   /api/2.0/mlflow/runs/log-parameter  run
member     POST   /api/2.0/mlflow/runs/outputs  run
member     POST   /api/2.0/mlflow/runs/set-tag  run
member     POST   /api/2.0/mlflow/runs/update  run
maintainer DELETE /api/2.0/mlflow-artifacts/artifacts/<path:artifact_path>
maintainer DELETE /api/2.0/mlflow/logged-models/<model_id>  logged_model
maintainer DELETE /api/2.0/mlflow/model-versions/delete  model version
maintainer POST   /api/2.0/mlflow/runs/delete  run
maintainer POST   /api/2.0/mlflow/runs/restore  run
admin      POST   /api/2.0/mlflow-artifacts/mpu/abort/<path:artifact_path>
admin      POST   /api/2.0/mlflow-artifacts/mpu/complete/<path:artifact_path>
admin      POST   /api/2.0/mlflow-artifacts/mpu/create/<path:artifact_path>
admin      POST   /api/2.0/mlflow/artifacts/presigned-download-url
admin      POST   /api/2.0/mlflow/artifacts/presigned-upload-url
admin      POST   /api/2.0/mlflow/experiments/create
admin      POST   /api/2.0/mlflow/experiments/delete
admin      POST   /api/2.0/mlflow/experiments/delete-experiment-tag
admin      POST   /api/2.0/mlflow/experiments/restore
admin      POST   /api/2.0/mlflow/experiments/set-experiment-tag
admin      POST   /api/2.0/mlflow/experiments/update
admin      GET    /api/2.0/mlflow/gateway-proxy
admin      POST   /api/2.0/mlflow/gateway-proxy
admin      GET    /api/2.0/mlflow/get-online-trace-details
admin      POST   /api/2.0/mlflow/model-versions/transition-stage
admin      POST   /api/2.0/mlflow/registered-models/create
admin      DELETE /api/2.0/mlflow/registered-models/delete
admin      POST   /api/2.0/mlflow/registered-models/rename
admin      POST   /api/2.0/mlflow/runs/create-promptlab-run
admin      POST   /api/2.0/mlflow/traces
admin      PATCH  /api/2.0/mlflow/traces/<request_id>
admin      DELETE /api/2.0/mlflow/traces/<request_id>/tags
admin      PATCH  /api/2.0/mlflow/traces/<request_id>/tags
admin      POST   /api/2.0/mlflow/traces/delete-traces
admin      POST   /api/2.0/mlflow/traces/link-prompts
admin      POST   /api/2.0/mlflow/traces/link-to-run
admin      GET    /api/2.0/mlflow/unified-traces
admin      POST   /api/2.0/mlflow/upload-artifact
admin      POST   /api/2.0/mlflow/users/create
admin      POST   /api/2.0/mlflow/users/create-ui
admin      DELETE /api/2.0/mlflow/users/delete
admin      GET    /api/2.0/mlflow/users/get
admin      GET    /api/2.0/mlflow/users/list
admin      PATCH  /api/2.0/mlflow/users/update-admin
admin      PATCH  /api/2.0/mlflow/users/update-password
admin      GET    /api/2.0/mlflow/webhooks
admin      POST   /api/2.0/mlflow/webhooks
admin      DELETE /api/2.0/mlflow/webhooks/<webhook_id>
admin      GET    /api/2.0/mlflow/webhooks/<webhook_id>
admin      PATCH  /api/2.0/mlflow/webhooks/<webhook_id>
admin      POST   /api/2.0/mlflow/webhooks/<webhook_id>/test
admin      POST   /api/2.0mlflow/experiments/search-datasets
admin      POST   /api/3.0/jobs/
admin      GET    /api/3.0/jobs/<job_id>
admin      PATCH  /api/3.0/jobs/cancel/<job_id>
admin      POST   /api/3.0/jobs/search
admin      GET    /api/3.0/mlflow/assistant/config
admin      PUT    /api/3.0/mlflow/assistant/config
admin      POST   /api/3.0/mlflow/assistant/message
admin      GET    /api/3.0/mlflow/assistant/providers
admin      GET    /api/3.0/mlflow/assistant/providers/<provider>/health
admin      GET    /api/3.0/mlflow/assistant/providers/<provider>/models
admin      PATCH  /api/3.0/mlflow/assistant/sessions/<session_id>
admin      POST   /api/3.0/mlflow/assistant/sessions/<session_id>/permission
admin      GET    /api/3.0/mlflow/assistant/sessions/<session_id>/stream
admin      POST   /api/3.0/mlflow/assistant/sessions/<session_id>/tool-result
admin      POST   /api/3.0/mlflow/assistant/skills/install
admin      DELETE /api/3.0/mlflow/datasets/<dataset_id>
admin      GET    /api/3.0/mlflow/datasets/<dataset_id>
admin      POST   /api/3.0/mlflow/datasets/<dataset_id>/add-experiments
admin      GET    /api/3.0/mlflow/datasets/<dataset_id>/experiment-ids
admin      DELETE /api/3.0/mlflow/datasets/<dataset_id>/records
admin      GET    /api/3.0/mlflow/datasets/<dataset_id>/records
admin      POST   /api/3.0/mlflow/datasets/<dataset_id>/records
admin      POST   /api/3.0/mlflow/datasets/<dataset_id>/remove-experiments
admin      PATCH  /api/3.0/mlflow/datasets/<dataset_id>/tags
admin      DELETE /api/3.0/mlflow/datasets/<dataset_id>/tags/<key>
admin      POST   /api/3.0/mlflow/datasets/create
admin      GET    /api/3.0/mlflow/datasets/search
admin      POST   /api/3.0/mlflow/datasets/search
admin      POST   /api/3.0/mlflow/demo/delete
admin      POST   /api/3.0/mlflow/demo/generate
admin      POST   /api/3.0/mlflow/gateway/budgets/create
admin      DELETE /api/3.0/mlflow/gateway/budgets/delete
admin      GET    /api/3.0/mlflow/gateway/budgets/get
admin      GET    /api/3.0/mlflow/gateway/budgets/list
admin      POST   /api/3.0/mlflow/gateway/budgets/update
admin      GET    /api/3.0/mlflow/gateway/budgets/windows
admin      POST   /api/3.0/mlflow/gateway/endpoints/bindings/create
admin      DELETE /api/3.0/mlflow/gateway/endpoints/bindings/delete
admin      GET    /api/3.0/mlflow/gateway/endpoints/bindings/list
admin      POST   /api/3.0/mlflow/gateway/endpoints/create
admin      DELETE /api/3.0/mlflow/gateway/endpoints/delete
admin      DELETE /api/3.0/mlflow/gateway/endpoints/delete-tag
admin      GET    /api/3.0/mlflow/gateway/endpoints/get
admin      GET    /api/3.0/mlflow/gateway/endpoints/list
admin      POST   /api/3.0/mlflow/gateway/endpoints/models/attach
admin      POST   /api/3.0/mlflow/gateway/endpoints/models/detach
admin      POST   /api/3.0/mlflow/gateway/endpoints/set-tag
admin      POST   /api/3.0/mlflow/gateway/endpoints/update
admin      POST   /api/3.0/mlflow/gateway/guardrails/add-to-endpoint
admin      POST   /api/3.0/mlflow/gateway/guardrails/create
admin      DELETE /api/3.0/mlflow/gateway/guardrails/delete
admin      GET    /api/3.0/mlflow/gateway/guardrails/get
admin      GET    /api/3.0/mlflow/gateway/guardrails/list
admin      GET    /api/3.0/mlflow/gateway/guardrails/list-for-endpoint
admin      DELETE /api/3.0/mlflow/gateway/guardrails/remove-from-endpoint
admin      PATCH  /api/3.0/mlflow/gateway/guardrails/update-config
admin      POST   /api/3.0/mlflow/gateway/model-definitions/create
admin      DELETE /api/3.0/mlflow/gateway/model-definitions/delete
admin      GET    /api/3.0/mlflow/gateway/model-definitions/get
admin      GET    /api/3.0/mlflow/gateway/model-definitions/list
admin      POST   /api/3.0/mlflow/gateway/model-definitions/update
admin      GET    /api/3.0/mlflow/gateway/provider-config
admin      GET    /api/3.0/mlflow/gateway/secrets/config
admin      POST   /api/3.0/mlflow/gateway/secrets/create
admin      DELETE /api/3.0/mlflow/gateway/secrets/delete
admin      GET    /api/3.0/mlflow/gateway/secrets/get
admin      GET    /api/3.0/mlflow/gateway/secrets/list
admin      POST   /api/3.0/mlflow/gateway/secrets/update
admin      GET    /api/3.0/mlflow/gateway/supported-models
admin      GET    /api/3.0/mlflow/gateway/supported-providers
admin      POST   /api/3.0/mlflow/genai/evaluate/invoke
admin      POST   /api/3.0/mlflow/issues
admin      GET    /api/3.0/mlflow/issues/<issue_id>
admin      PATCH  /api/3.0/mlflow/issues/<issue_id>
admin      POST   /api/3.0/mlflow/issues/invoke
admin      POST   /api/3.0/mlflow/issues/search
admin      GET    /api/3.0/mlflow/jobs/<job_id>
admin      PATCH  /api/3.0/mlflow/jobs/cancel/<job_id>
admin      POST   /api/3.0/mlflow/label-schemas/create
admin      DELETE /api/3.0/mlflow/label-schemas/delete
admin      GET    /api/3.0/mlflow/label-schemas/get
admin      GET    /api/3.0/mlflow/label-schemas/get-by-name
admin      GET    /api/3.0/mlflow/label-schemas/list
admin      PATCH  /api/3.0/mlflow/label-schemas/update
admin      GET    /api/3.0/mlflow/mcp-servers
admin      POST   /api/3.0/mlflow/mcp-servers
admin      DELETE /api/3.0/mlflow/mcp-servers/<path:name>
admin      GET    /api/3.0/mlflow/mcp-servers/<path:name>
admin      PATCH  /api/3.0/mlflow/mcp-servers/<path:name>
admin      POST   /api/3.0/mlflow/mcp-servers/<path:name>/aliases
admin      DELETE /api/3.0/mlflow/mcp-servers/<path:name>/aliases/<path:alias>
admin      GET    /api/3.0/mlflow/mcp-servers/<path:name>/aliases/<path:alias>
admin      GET    /api/3.0/mlflow/mcp-servers/<path:name>/endpoints
admin      POST   /api/3.0/mlflow/mcp-servers/<path:name>/endpoints
admin      DELETE /api/3.0/mlflow/mcp-servers/<path:name>/endpoints/<endpoint_id>
admin      GET    /api/3.0/mlflow/mcp-servers/<path:name>/endpoints/<endpoint_id>
admin      PATCH  /api/3.0/mlflow/mcp-servers/<path:name>/endpoints/<endpoint_id>
admin      POST   /api/3.0/mlflow/mcp-servers/<path:name>/tags
admin      DELETE /api/3.0/mlflow/mcp-servers/<path:name>/tags/<path:key>
admin      GET    /api/3.0/mlflow/mcp-servers/<path:name>/versions
admin      POST   /api/3.0/mlflow/mcp-servers/<path:name>/versions
admin      DELETE /api/3.0/mlflow/mcp-servers/<path:name>/versions/<path:version>
admin      GET    /api/3.0/mlflow/mcp-servers/<path:name>/versions/<path:version>
admin      PATCH  /api/3.0/mlflow/mcp-servers/<path:name>/versions/<path:version>
admin      POST   /api/3.0/mlflow/mcp-servers/<path:name>/versions/<path:version>/tags
admin      DELETE /api/3.0/mlflow/mcp-servers/<path:name>/versions/<path:version>/tags/<path:key>
admin      GET    /api/3.0/mlflow/mcp-servers/endpoints
admin      POST   /api/3.0/mlflow/prompt-optimization/jobs
admin      DELETE /api/3.0/mlflow/prompt-optimization/jobs/<job_id>
admin      GET    /api/3.0/mlflow/prompt-optimization/jobs/<job_id>
admin      POST   /api/3.0/mlflow/prompt-optimization/jobs/<job_id>/cancel
admin      GET    /api/3.0/mlflow/prompt-optimization/jobs/search
admin      POST   /api/3.0/mlflow/prompt-optimization/jobs/search
admin      POST   /api/3.0/mlflow/review-queues/create
admin      POST   /api/3.0/mlflow/review-queues/delete
admin      GET    /api/3.0/mlflow/review-queues/get
admin      GET    /api/3.0/mlflow/review-queues/get-by-name
admin      POST   /api/3.0/mlflow/review-queues/get-or-create-user
admin      POST   /api/3.0/mlflow/review-queues/items/add
admin      GET    /api/3.0/mlflow/review-queues/items/list
admin      POST   /api/3.0/mlflow/review-queues/items/remove
admin      POST   /api/3.0/mlflow/review-queues/items/set-status
admin      GET    /api/3.0/mlflow/review-queues/list
admin      POST   /api/3.0/mlflow/review-queues/update
admin      POST   /api/3.0/mlflow/roles/assign
admin      POST   /api/3.0/mlflow/roles/create
admin      DELETE /api/3.0/mlflow/roles/delete
admin      GET    /api/3.0/mlflow/roles/get
admin      GET    /api/3.0/mlflow/roles/list
admin      POST   /api/3.0/mlflow/roles/permissions/add
admin      GET    /api/3.0/mlflow/roles/permissions/list
admin      DELETE /api/3.0/mlflow/roles/permissions/remove
admin      PATCH  /api/3.0/mlflow/roles/permissions/update
admin      DELETE /api/3.0/mlflow/roles/unassign
admin      PATCH  /api/3.0/mlflow/roles/update
admin      GET    /api/3.0/mlflow/roles/users/list
admin      POST   /api/3.0/mlflow/scorer/invoke
admin      DELETE /api/3.0/mlflow/scorers/delete
admin      GET    /api/3.0/mlflow/scorers/get
admin      GET    /api/3.0/mlflow/scorers/list
admin      PUT    /api/3.0/mlflow/scorers/online-config
admin      GET    /api/3.0/mlflow/scorers/online-configs
admin      POST   /api/3.0/mlflow/scorers/register
admin      GET    /api/3.0/mlflow/scorers/versions
admin      POST   /api/3.0/mlflow/traces
admin      POST   /api/3.0/mlflow/traces/<trace_id>/assessments
admin      DELETE /api/3.0/mlflow/traces/<trace_id>/assessments/<assessment_id>
admin      GET    /api/3.0/mlflow/traces/<trace_id>/assessments/<assessment_id>
admin      PATCH  /api/3.0/mlflow/traces/<trace_id>/assessments/<assessment_id>
admin      DELETE /api/3.0/mlflow/traces/<trace_id>/tags
admin      PATCH  /api/3.0/mlflow/traces/<trace_id>/tags
admin      POST   /api/3.0/mlflow/traces/calculate-filter-correlation
admin      POST   /api/3.0/mlflow/traces/delete-traces
admin      GET    /api/3.0/mlflow/ui-telemetry
admin      POST   /api/3.0/mlflow/ui-telemetry
admin      GET    /api/3.0/mlflow/users/permissions/get
admin      POST   /api/3.0/mlflow/users/permissions/grant
admin      GET    /api/3.0/mlflow/users/permissions/list
admin      POST   /api/3.0/mlflow/users/permissions/revoke
admin      GET    /api/3.0/mlflow/users/roles/list
admin      GET    /api/3.0/mlflow/workspaces
admin      POST   /api/3.0/mlflow/workspaces
admin      DELETE /api/3.0/mlflow/workspaces/<workspace_name>
admin      GET    /api/3.0/mlflow/workspaces/<workspace_name>
admin      PATCH  /api/3.0/mlflow/workspaces/<workspace_name>
admin      POST   /gateway/<endpoint_name>/mlflow/invocations
admin      POST   /gateway/anthropic/v1/messages
admin      POST   /gateway/gemini/v1beta/models/<endpoint_name>:generateContent
admin      POST   /gateway/gemini/v1beta/models/<endpoint_name>:streamGenerateContent
admin      POST   /gateway/mlflow/v1/chat/completions
admin      GET    /gateway/mlflow/v1/models
admin      POST   /gateway/openai/v1/chat/completions
admin      POST   /gateway/openai/v1/embeddings
admin      POST   /gateway/openai/v1/responses
admin      POST   /gateway/openai/v1/responses/compact
admin      POST   /gateway/proxy/<endpoint_name>/<path:path>
admin      POST   /gateway/typesafe/v1/systemone
admin      GET    /signup
admin      POST   /v1/traces
"""
