//! Listing every page, and finding services and nodes by name.

use std::future::Future;

use castplane_proto::v1 as pb;

use crate::client::Api;
use crate::error::{CliError, Result};

const PAGE_SIZE: i32 = 500;

/// Follows `next_page_token` until the last page. `fetch` gets the page token and returns one
/// page and the next token.
pub async fn all_pages<T, F, Fut>(mut fetch: F) -> Result<Vec<T>>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, String)>>,
{
    let mut items = Vec::new();
    let mut token = String::new();
    loop {
        let (page, next) = fetch(token.clone()).await?;
        items.extend(page);
        if next.is_empty() {
            return Ok(items);
        }
        // A server that hands back the token it was given would keep us here forever.
        if next == token {
            return Err(CliError::failed(
                "the server returned the same page token twice; stopping",
            ));
        }
        token = next;
    }
}

pub async fn list_services(
    api: &Api,
    request: pb::ListMediaServicesRequest,
) -> Result<Vec<pb::MediaService>> {
    all_pages(|page_token| {
        let mut client = api.media.clone();
        let request = pb::ListMediaServicesRequest {
            page_size: PAGE_SIZE,
            page_token,
            ..request.clone()
        };
        async move {
            let r = client.list_media_services(request).await?.into_inner();
            Ok((r.media_services, r.next_page_token))
        }
    })
    .await
}

pub async fn list_nodes(api: &Api) -> Result<Vec<pb::Node>> {
    all_pages(|page_token| {
        let mut client = api.nodes.clone();
        async move {
            let r = client
                .list_nodes(pb::ListNodesRequest {
                    page_size: PAGE_SIZE,
                    page_token,
                })
                .await?
                .into_inner();
            Ok((r.nodes, r.next_page_token))
        }
    })
    .await
}

pub async fn list_resellers(api: &Api) -> Result<Vec<pb::Reseller>> {
    all_pages(|page_token| {
        let mut client = api.accounts.clone();
        async move {
            let r = client
                .list_resellers(pb::ListResellersRequest {
                    page_size: PAGE_SIZE,
                    page_token,
                })
                .await?
                .into_inner();
            Ok((r.resellers, r.next_page_token))
        }
    })
    .await
}

pub async fn list_customers(api: &Api, reseller_id: String) -> Result<Vec<pb::Customer>> {
    all_pages(|page_token| {
        let mut client = api.accounts.clone();
        let reseller_id = reseller_id.clone();
        async move {
            let r = client
                .list_customers(pb::ListCustomersRequest {
                    reseller_id,
                    page_size: PAGE_SIZE,
                    page_token,
                })
                .await?
                .into_inner();
            Ok((r.customers, r.next_page_token))
        }
    })
    .await
}

pub async fn list_actions(
    api: &Api,
    media_service_id: String,
    state: pb::ActionState,
) -> Result<Vec<pb::Action>> {
    all_pages(|page_token| {
        let mut client = api.actions.clone();
        let media_service_id = media_service_id.clone();
        async move {
            let r = client
                .list_actions(pb::ListActionsRequest {
                    media_service_id,
                    state: state as i32,
                    page_size: PAGE_SIZE,
                    page_token,
                })
                .await?
                .into_inner();
            Ok((r.actions, r.next_page_token))
        }
    })
    .await
}

/// Display names for the ids a listing shows, so tables name customers, resellers and nodes
/// instead of only identifying them. What the caller may not read stays an id.
#[derive(Default)]
pub struct Names {
    names: std::collections::HashMap<String, String>,
}

impl Names {
    /// `name (id)`, or the id alone when its name is unknown.
    pub fn of(&self, id: &str) -> String {
        match self.names.get(id) {
            Some(name) => format!("{name} ({id})"),
            None if id.is_empty() => "-".to_owned(),
            None => id.to_owned(),
        }
    }

    /// Customers by id, one lookup per distinct id.
    pub async fn customers(mut self, api: &Api, ids: impl IntoIterator<Item = &str>) -> Self {
        let mut client = api.accounts.clone();
        let unique: std::collections::BTreeSet<&str> = ids.into_iter().collect();
        for id in unique {
            if let Ok(c) = client
                .get_customer(pb::GetCustomerRequest { id: id.to_owned() })
                .await
            {
                self.names
                    .insert(id.to_owned(), c.into_inner().display_name);
            }
        }
        self
    }

    /// Every reseller, when the caller may list them (the admin).
    pub async fn resellers(mut self, api: &Api) -> Self {
        if let Ok(resellers) = list_resellers(api).await {
            self.names
                .extend(resellers.into_iter().map(|r| (r.id, r.display_name)));
        }
        self
    }

    /// Every node, when the caller may list them (the admin).
    pub async fn nodes(mut self, api: &Api) -> Self {
        if let Ok(nodes) = list_nodes(api).await {
            self.names.extend(nodes.into_iter().map(|n| (n.id, n.name)));
        }
        self
    }
}

/// A service's id from its name or id. Ids start with `svc_`, which no name can (names have no
/// underscore), so an id is used as is and the server answers if it does not exist.
pub async fn service_id(api: &Api, name_or_id: &str) -> Result<String> {
    if name_or_id.starts_with("svc_") {
        return Ok(name_or_id.to_owned());
    }
    // The API has no name filter: list what the caller can see and match here.
    let services = list_services(
        api,
        pb::ListMediaServicesRequest {
            scope: pb::ServiceScope::All as i32,
            ..Default::default()
        },
    )
    .await?;
    pick_service(&services, name_or_id)
}

/// The one service with this name; none or several is an error naming the candidates.
fn pick_service(services: &[pb::MediaService], name: &str) -> Result<String> {
    let matches: Vec<_> = services.iter().filter(|s| s.name == name).collect();
    match matches.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => Err(CliError::failed(format!(
            "no media service named {name:?} is visible to you"
        ))),
        many => Err(CliError::failed(format!(
            "{} media services are named {name:?} (names are unique per reseller only); use an id: {}",
            many.len(),
            many.iter()
                .map(|s| format!(
                    "{} (reseller {}, customer {})",
                    s.id, s.reseller_id, s.customer_id
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// A node from its name or id. Node names may contain `_`, so a `node_…` argument is tried as
/// an id first and then as a name.
pub async fn node(api: &Api, name_or_id: &str) -> Result<pb::Node> {
    if name_or_id.starts_with("node_") {
        let mut client = api.nodes.clone();
        match client
            .get_node(pb::GetNodeRequest {
                id: name_or_id.to_owned(),
            })
            .await
        {
            Ok(node) => return Ok(node.into_inner()),
            Err(status) if status.code() == tonic::Code::NotFound => {}
            Err(status) => return Err(status.into()),
        }
    }
    let nodes = list_nodes(api).await?;
    let matches: Vec<_> = nodes.into_iter().filter(|n| n.name == name_or_id).collect();
    let count = matches.len();
    let mut matches = matches.into_iter();
    match (matches.next(), count) {
        (Some(node), 1) => Ok(node),
        (None, _) => Err(CliError::failed(format!("no node named {name_or_id:?}"))),
        (Some(first), _) => Err(CliError::failed(format!(
            "{count} nodes are named {name_or_id:?}; use an id: {}",
            std::iter::once(first)
                .chain(matches)
                .map(|n| n.id)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(id: &str, name: &str, reseller: &str) -> pb::MediaService {
        pb::MediaService {
            id: id.into(),
            name: name.into(),
            reseller_id: reseller.into(),
            ..Default::default()
        }
    }

    #[test]
    fn names_resolve_to_one_id_or_list_the_candidates() {
        let services = [
            service("svc_1", "radio", "rsl_a"),
            service("svc_2", "radio", "rsl_b"),
            service("svc_3", "talk", "rsl_a"),
        ];
        assert_eq!(pick_service(&services, "talk").expect("one"), "svc_3");
        let err = pick_service(&services, "radio").expect_err("ambiguous");
        let text = err.to_string();
        assert!(text.contains("svc_1 (reseller rsl_a"), "{text}");
        assert!(text.contains("svc_2 (reseller rsl_b"), "{text}");
        let err = pick_service(&services, "jazz").expect_err("none");
        assert!(err.to_string().contains("no media service named \"jazz\""));
    }
}
