// Typed clients of castplane's public API over any transport: gRPC-web in the browser, the same
// in the browser tests' setup code. Every message type is generated from ../proto.
import { createClient, type Transport } from "@connectrpc/connect";
import { AccountService } from "./gen/castplane/v1/accounts_pb";
import { ActionService } from "./gen/castplane/v1/actions_pb";
import { CatalogService } from "./gen/castplane/v1/catalog_pb";
import { MediaLibraryService } from "./gen/castplane/v1/media_pb";
import { MediaServiceService } from "./gen/castplane/v1/media_services_pb";
import { NodeService } from "./gen/castplane/v1/nodes_pb";
import { LoginService, SessionService } from "./gen/castplane/v1/sessions_pb";

export function clients(transport: Transport) {
  return {
    accounts: createClient(AccountService, transport),
    actions: createClient(ActionService, transport),
    catalog: createClient(CatalogService, transport),
    services: createClient(MediaServiceService, transport),
    // Its uploads are client streams, which gRPC-web cannot send: see ../upload.ts.
    library: createClient(MediaLibraryService, transport),
    nodes: createClient(NodeService, transport),
    sessions: createClient(SessionService, transport),
    logins: createClient(LoginService, transport),
  };
}

export type Clients = ReturnType<typeof clients>;
