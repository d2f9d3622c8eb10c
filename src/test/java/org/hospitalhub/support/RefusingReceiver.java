package org.hospitalhub.support;

import java.util.concurrent.atomic.AtomicInteger;

import jakarta.ws.rs.POST;
import jakarta.ws.rs.Path;
import jakarta.ws.rs.core.Response;

/** A receiving system's HTTP API that refuses every batch (422), for the failing hospital's http-sink flow. */
@Path("/test-receiver/refuse")
public class RefusingReceiver {

    public static final AtomicInteger CALLS = new AtomicInteger();

    @POST
    public Response receive(String body) {
        CALLS.incrementAndGet();
        return Response.status(422).entity("receiver refuses every batch").build();
    }
}
