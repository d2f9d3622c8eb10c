package org.hospitalhub.sync;

import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;

import jakarta.ws.rs.Consumes;
import jakarta.ws.rs.POST;
import jakarta.ws.rs.Path;
import jakarta.ws.rs.Produces;
import jakarta.ws.rs.container.ContainerRequestContext;
import jakarta.ws.rs.core.Context;
import jakarta.ws.rs.core.HttpHeaders;
import jakarta.ws.rs.core.MediaType;
import jakarta.ws.rs.core.Response;

import org.hospitalhub.delivery.Event;
import org.hospitalhub.delivery.EventParser;
import org.hospitalhub.delivery.EventStore;
import org.hospitalhub.delivery.GroupCommitter;
import org.hospitalhub.delivery.InvalidEventException;
import org.hospitalhub.delivery.XmlEventReader;
import org.hospitalhub.ops.ApiKeyFilter;
import org.hospitalhub.ops.Callers;
import org.jboss.logging.Logger;

import io.smallrye.common.annotation.Blocking;

/**
 * HTTP ingest: one event or an array, JSON or legacy XML. 202 with the accepted ids once durably stored; all of the
 * request is stored or none of it.
 */
@Path("/api/v1/events")
public class EventsResource {

    private static final Logger LOG = Logger.getLogger(EventsResource.class);

    private final EventParser parser;
    private final XmlEventReader xml;
    private final EventStore store;

    public EventsResource(EventParser parser, XmlEventReader xml, EventStore store) {
        this.parser = parser;
        this.xml = xml;
        this.store = store;
    }

    public record Accepted(List<String> accepted, List<String> duplicates) {
    }

    @POST
    @Consumes({ MediaType.APPLICATION_JSON, MediaType.APPLICATION_XML, MediaType.TEXT_XML })
    @Produces(MediaType.APPLICATION_JSON)
    @Blocking // parsing and validation on a worker thread; the answer waits for the group commit without holding it
    public CompletionStage<Response> post(String body, @Context HttpHeaders headers, @Context ContainerRequestContext ctx) {
        Callers.Caller caller = (Callers.Caller) ctx.getProperty(ApiKeyFilter.CALLER);
        List<Event> events;
        try {
            MediaType type = headers.getMediaType();
            boolean isXml = type != null && type.getSubtype().toLowerCase().endsWith("xml");
            events = isXml ? xml.read(body) : parser.parseBody(body);
        } catch (InvalidEventException e) {
            return CompletableFuture.completedFuture(invalid(e));
        }
        if (caller.role() != Callers.Role.OPERATOR) {
            for (int i = 0; i < events.size(); i++) {
                Event e = events.get(i);
                if (!caller.name().equals(e.source())) {
                    String field = events.size() == 1 ? "source" : "[" + i + "].source";
                    return CompletableFuture.completedFuture(ApiKeyFilter.ErrorBody.response(403, field + ": caller "
                            + caller.name() + " may only send events with source " + caller.name() + ", got " + e.source(),
                            field, "source-is-caller"));
                }
            }
        }
        // stored together with the other requests waiting at this moment (one commit for all); 202 only once committed
        return store.storeGrouped(events, "http").handle((stored, failure) -> {
            if (failure == null) {
                LOG.debugf("Accepted %d events (%d duplicates) from %s", events.size(), stored.duplicates().size(), caller.name());
                return Response.accepted(new Accepted(stored.accepted(), stored.duplicates())).build();
            }
            Throwable cause = failure instanceof CompletionException && failure.getCause() != null ? failure.getCause() : failure;
            if (cause instanceof GroupCommitter.Busy busy) {
                return ApiKeyFilter.ErrorBody.builder(503, busy.getMessage() + " (nothing of this request was stored)", null,
                        "ingest-busy").header("Retry-After", "1").build();
            }
            throw cause instanceof RuntimeException r ? r : new CompletionException(cause);
        });
    }

    static Response invalid(InvalidEventException e) {
        int status = e.kind() == InvalidEventException.Kind.UNKNOWN_TYPE ? 422 : 400;
        return ApiKeyFilter.ErrorBody.response(status, e.getMessage(), e.field(), e.rule());
    }
}
