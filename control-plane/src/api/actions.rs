//! `castplane.v1.ActionService`.

use std::pin::Pin;

use castplane_proto::v1 as pb;
use castplane_proto::v1::action_service_server::ActionService;
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::convert::action_to_wire;
use super::{optional, principal, required};
use crate::domain::ActionState;
use crate::error::ServiceError;
use crate::service::ControlPlane;

pub struct ActionApi {
    pub control_plane: ControlPlane,
}

#[tonic::async_trait]
impl ActionService for ActionApi {
    type WatchActionStream =
        Pin<Box<dyn Stream<Item = Result<pb::Action, Status>> + Send + 'static>>;

    #[tracing::instrument(skip_all)]
    async fn get_action(
        &self,
        request: Request<pb::GetActionRequest>,
    ) -> Result<Response<pb::Action>, Status> {
        let principal = principal(&request)?;
        let id = required("id", &request.get_ref().id)?;
        let record = self.control_plane.get_action(&principal, id).await?;
        Ok(Response::new(action_to_wire(&record)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_actions(
        &self,
        request: Request<pb::ListActionsRequest>,
    ) -> Result<Response<pb::ListActionsResponse>, Status> {
        let principal = principal(&request)?;
        let r = request.get_ref();
        let state = match pb::ActionState::try_from(r.state) {
            Ok(pb::ActionState::Unspecified) => None,
            Ok(state) => ActionState::try_from(state).ok(),
            Err(_) => {
                return Err(ServiceError::invalid_field(
                    "state",
                    format!("{} is not an action state", r.state),
                )
                .into());
            }
        };
        let newest_first = match r.order_by.trim() {
            "" | "create_time" | "create_time asc" => false,
            "create_time desc" => true,
            other => {
                return Err(ServiceError::invalid_field(
                    "order_by",
                    format!(
                        "{other:?} is not an order: use \"create_time desc\" or leave it empty"
                    ),
                )
                .into());
            }
        };
        let (records, next_page_token) = self
            .control_plane
            .list_actions(
                &principal,
                optional(&r.media_service_id),
                state,
                newest_first,
                &r.page_token,
                r.page_size,
            )
            .await?;
        Ok(Response::new(pb::ListActionsResponse {
            actions: records.iter().map(action_to_wire).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn watch_action(
        &self,
        request: Request<pb::WatchActionRequest>,
    ) -> Result<Response<Self::WatchActionStream>, Status> {
        let principal = principal(&request)?;
        let id = required("id", &request.get_ref().id)?;
        let stream = self.control_plane.watch_action(&principal, id).await?;
        let stream = stream.map(|item| {
            item.map(|record| action_to_wire(&record))
                .map_err(Status::from)
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
