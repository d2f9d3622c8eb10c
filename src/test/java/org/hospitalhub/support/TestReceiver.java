package org.hospitalhub.support;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;

import jakarta.ws.rs.Consumes;
import jakarta.ws.rs.POST;
import jakarta.ws.rs.Path;
import jakarta.ws.rs.core.Response;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

/**
 * A receiving system's HTTP API for the tests (served by the test application on its own port): records each batch,
 * and fails with a chosen status for the next N calls.
 */
@Path("/test-receiver/ledger")
public class TestReceiver {

    public static final List<JsonNode> BATCHES = new CopyOnWriteArrayList<>();
    public static final List<Long> CALL_TIMES = new CopyOnWriteArrayList<>();
    public static final AtomicInteger FAIL_NEXT = new AtomicInteger();
    public static volatile int failStatus = 503;

    private static final ObjectMapper MAPPER = new ObjectMapper();

    @POST
    @Consumes("application/json")
    public Response receive(String body) throws Exception {
        CALL_TIMES.add(System.currentTimeMillis());
        if (FAIL_NEXT.getAndUpdate(n -> Math.max(0, n - 1)) > 0) {
            return Response.status(failStatus).entity("receiver says no").build();
        }
        BATCHES.add(MAPPER.readTree(body));
        return Response.ok().build();
    }

    public static void reset() {
        BATCHES.clear();
        CALL_TIMES.clear();
        FAIL_NEXT.set(0);
        failStatus = 503;
    }
}
