//! `l402 mcp --admin`: an MCP server over stdio for operators' agents, offering the proxy's admin API as tools
//! (what `l402 admin` does): `list_services`, `add_service`, `update_service`, `delete_service`, `list_tokens`,
//! `revoke_token`, `revenue`. It talks to the admin listener at `--admin-url` with the token from
//! `--admin-token-file` or `L402_ADMIN_TOKEN` (never shown to the agent). A refusal comes back as a tool
//! error whose text starts with the HTTP status and carries the API's reason; nothing in this mode pays.

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, ServerCapabilities, ServerConfig};
use rmcp::{ErrorData, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::admin::{reason, request, segment};

#[derive(Clone)]
pub(crate) struct AdminMcp {
    url: Arc<String>,
    token: Arc<String>,
    tool_router: ToolRouter<Self>,
}

/// A service name.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct NameParams {
    /// The service name.
    name: String,
}

/// A service to add.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct ServiceParams {
    /// The service: an object with the keys of a `[[service]]` table of the proxy's config (name, path,
    /// upstream, price_sat or price_msat, lifetime_secs, capabilities, route, schemes, rate_limit, ...).
    service: serde_json::Map<String, serde_json::Value>,
}

/// A service to replace.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct UpdateParams {
    /// The service name.
    name: String,
    /// The whole new service (its name must be `name`, or absent).
    service: serde_json::Map<String, serde_json::Value>,
}

/// Which tokens to list.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct TokensParams {
    /// How many of the newest (default 100, at most 10000).
    #[serde(default)]
    limit: Option<u32>,
    /// Only this service's tokens.
    #[serde(default)]
    service: Option<String>,
}

/// A token id.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct TokenParams {
    /// The token id (64 hex digits).
    id: String,
}

fn text(s: String) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(s)])
}

fn tool_error(s: String) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(s)])
}

impl AdminMcp {
    pub(crate) fn new(url: String, token: String) -> Self {
        Self {
            url: Arc::new(url.trim_end_matches('/').to_owned()),
            token: Arc::new(token),
            tool_router: Self::tool_router(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<serde_json::Value>) -> CallToolResult {
        let body = body.map(|b| serde_json::to_vec(&b).unwrap_or_default());
        match request(&self.url, method, path, body, &self.token).await {
            Ok((status, body)) if (200..300).contains(&status) => {
                text(if body.is_empty() { format!("{status}") } else { body })
            }
            Ok((status, body)) => tool_error(format!("{status}: {}", reason(&body))),
            Err(e) => tool_error(format!("unreachable: {e}")),
        }
    }
}

#[tool_router(router = tool_router)]
impl AdminMcp {
    #[tool(description = "List the proxy's live services, in matching order (literal header values redacted).")]
    async fn list_services(&self) -> Result<CallToolResult, ErrorData> {
        Ok(self.call(reqwest::Method::GET, "/admin/services", None).await)
    }

    #[tool(description = "Add a service to the proxy: checked as its config file is, applied at once, kept in its \
                          store. Refused (409) if the name is taken, (422) if the service is not valid.")]
    async fn add_service(&self, Parameters(p): Parameters<ServiceParams>) -> Result<CallToolResult, ErrorData> {
        Ok(self.call(reqwest::Method::POST, "/admin/services", Some(p.service.into())).await)
    }

    #[tool(description = "Replace a service of the proxy (price, lifetime, capabilities, upstream, schemes, limits) \
                          with a whole new one. Refused (404) if there is no such service.")]
    async fn update_service(&self, Parameters(p): Parameters<UpdateParams>) -> Result<CallToolResult, ErrorData> {
        let path = format!("/admin/services/{}", segment(&p.name));
        Ok(self.call(reqwest::Method::PUT, &path, Some(p.service.into())).await)
    }

    #[tool(description = "Delete a service of the proxy (it stays deleted across restarts).")]
    async fn delete_service(&self, Parameters(p): Parameters<NameParams>) -> Result<CallToolResult, ErrorData> {
        Ok(self.call(reqwest::Method::DELETE, &format!("/admin/services/{}", segment(&p.name)), None).await)
    }

    #[tool(description = "List the newest tokens the proxy minted (no secrets).")]
    async fn list_tokens(&self, Parameters(p): Parameters<TokensParams>) -> Result<CallToolResult, ErrorData> {
        let mut path = format!("/admin/tokens?limit={}", p.limit.unwrap_or(100));
        if let Some(s) = &p.service {
            path.push_str(&format!("&service={}", segment(s)));
        }
        Ok(self.call(reqwest::Method::GET, &path, None).await)
    }

    #[tool(description = "Revoke a token by id: refused by every instance of the proxy within its revocation bound.")]
    async fn revoke_token(&self, Parameters(p): Parameters<TokenParams>) -> Result<CallToolResult, ErrorData> {
        Ok(self.call(reqwest::Method::POST, &format!("/admin/tokens/{}/revoke", segment(&p.id)), None).await)
    }

    #[tool(description = "The proxy's revenue per service.")]
    async fn revenue(&self) -> Result<CallToolResult, ErrorData> {
        Ok(self.call(reqwest::Method::GET, "/admin/revenue", None).await)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for AdminMcp {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::new(ServerCapabilities::builder().enable_tools().build());
        info.instructions = Some(
            "Operate an l402 proxy: list, add, update and delete its priced services, list and revoke its tokens, \
             read its revenue. Refusals start with the HTTP status and give the reason."
                .into(),
        );
        info
    }
}
