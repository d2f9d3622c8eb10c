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
 * fails with a chosen status for the next N calls, and can be slow.
 */
@Path("/test-receiver/ledger")
public class TestReceiver {

    public static final List<JsonNode> BATCHES = new CopyOnWriteArrayList<>();
    public static final List<Long> CALL_TIMES = new CopyOnWriteArrayList<>();
    public static final AtomicInteger FAIL_NEXT = new AtomicInteger();
    public static volatile int failStatus = 503;
    /** How long each call takes (a slow receiving system). */
    public static volatile long delayMillis;
    /** Calls being answered now, and the most seen at once. */
    public static final AtomicInteger ACTIVE = new AtomicInteger();
    public static final AtomicInteger MAX_ACTIVE = new AtomicInteger();

    private static final ObjectMapper MAPPER = new ObjectMapper();

    @POST
    @Consumes("application/json")
    public Response receive(String body) throws Exception {
        CALL_TIMES.add(System.currentTimeMillis());
        MAX_ACTIVE.accumulateAndGet(ACTIVE.incrementAndGet(), Math::max);
        try {
            if (delayMillis > 0) {
                Thread.sleep(delayMillis);
            }
            return answer(body);
        } finally {
            ACTIVE.decrementAndGet();
        }
    }

    private static Response answer(String body) throws Exception {
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
        delayMillis = 0;
        MAX_ACTIVE.set(0);
    }
}
