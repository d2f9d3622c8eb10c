package org.hospitalhub.federation.network;

import java.util.LinkedHashMap;
import java.util.Map;

import jakarta.ws.rs.Consumes;
import jakarta.ws.rs.HeaderParam;
import jakarta.ws.rs.POST;
import jakarta.ws.rs.Path;
import jakarta.ws.rs.Produces;
import jakarta.ws.rs.core.Context;
import jakarta.ws.rs.core.MediaType;
import jakarta.ws.rs.core.Response;

import io.smallrye.common.annotation.Blocking;
import io.vertx.core.http.HttpServerRequest;

/**
 * The inter-node endpoint {@code POST /federation/v1/messages}, outside /api: peers authenticate by signature (see
 * {@link Transmission}), not by API key. 200 acknowledges a message stored (or already had, {@code duplicate: true});
 * 401 unsigned, unknown sender, wrong signature or expired; 409 replayed; 400 malformed; 503 not stored (resend).
 * A body that is a JSON array carries several messages in the sender's order: a refused transmission gets the status
 * above; otherwise 200 with {@code results}, one receipt per message handled, up to the first one not acknowledged.
 */
@Path(Transmission.PATH)
@Blocking
public class MessageResource {

    private final Inbox inbox;

    public MessageResource(Inbox inbox) {
        this.inbox = inbox;
    }

    @POST
    @Consumes({ MediaType.APPLICATION_JSON, MediaType.TEXT_PLAIN, MediaType.WILDCARD })
    @Produces(MediaType.APPLICATION_JSON)
    public Response receive(String body, @HeaderParam(Transmission.NODE) String node, @HeaderParam(Transmission.NONCE) String nonce,
            @HeaderParam(Transmission.TIMESTAMP) String timestamp, @HeaderParam(Transmission.SIGNATURE) String signature,
            @Context HttpServerRequest request) {
        String remote = request.remoteAddress() == null ? null : request.remoteAddress().hostAddress();
        if (body != null && body.stripLeading().startsWith("[")) {
            Inbox.BatchReceipt rs = inbox.receiveBatch(node, nonce, timestamp, signature, body, remote);
            if (rs.refusal() != null) {
                return Response.status(rs.refusal().status()).type(MediaType.APPLICATION_JSON).entity(json(rs.refusal())).build();
            }
            Map<String, Object> out = new LinkedHashMap<>();
            out.put("status", 200);
            out.put("results", rs.messages().stream().map(MessageResource::json).toList());
            return Response.ok(out, MediaType.APPLICATION_JSON).build();
        }
        Inbox.Receipt r = inbox.receive(node, nonce, timestamp, signature, body, remote);
        return Response.status(r.status()).type(MediaType.APPLICATION_JSON).entity(json(r)).build();
    }

    private static Map<String, Object> json(Inbox.Receipt r) {
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("status", r.status());
        if (r.status() == 200) {
            out.put("ack", r.messageId());
            out.put("duplicate", r.duplicate());
        } else {
            out.put("error", r.error());
            out.put("field", r.field());
        }
        return out;
    }
}
