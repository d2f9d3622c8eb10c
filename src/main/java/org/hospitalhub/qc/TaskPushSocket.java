package org.hospitalhub.qc;

import java.util.List;
import java.util.Map;
import java.util.Optional;

import jakarta.enterprise.context.ApplicationScoped;

import org.hospitalhub.ops.Callers;

import io.quarkus.websockets.next.HttpUpgradeCheck;
import io.quarkus.websockets.next.OnClose;
import io.quarkus.websockets.next.OnOpen;
import io.quarkus.websockets.next.UserData;
import io.quarkus.websockets.next.WebSocket;
import io.quarkus.websockets.next.WebSocketConnection;
import io.smallrye.mutiny.Uni;
import io.vertx.core.http.HttpServerRequest;

/**
 * WebSocket {@code /ws/qc/tasks}: live qc task events for a doctor or a department, replayed from a cursor on
 * reconnect. Query parameters {@code doctor}, {@code department}, {@code hospital}, {@code cursor}; API key in header
 * {@code X-Api-Key} or query parameter {@code key} (browsers cannot set headers on a WebSocket). Messages: see
 * {@link TaskPush}. Only the server speaks; what a client sends is ignored.
 */
@WebSocket(path = TaskPushSocket.PATH)
public class TaskPushSocket {

    static final String PATH = "/ws/qc/tasks";
    static final UserData.TypedKey<TaskPush.Subscription> SUBSCRIPTION = new UserData.TypedKey<>("qc.subscription");

    private final TaskPush push;

    public TaskPushSocket(TaskPush push) {
        this.push = push;
    }

    @OnOpen
    void open(WebSocketConnection connection) {
        push.open(connection, connection.userData().get(SUBSCRIPTION));
    }

    @OnClose
    void close(WebSocketConnection connection) {
        push.close(connection);
    }

    /**
     * Refuses the upgrade before the WebSocket opens: 401 without a known key, 403 for a source key or a doctor asking
     * for another doctor's or a department's tasks, 400 for a bad cursor. Subscriptions: operator any (none = all
     * events), doctor only {@code doctor=<own id>} (the default).
     */
    @ApplicationScoped
    public static class Check implements HttpUpgradeCheck {

        private final Callers callers;

        public Check(Callers callers) {
            this.callers = callers;
        }

        @Override
        public boolean appliesTo(String endpointId) {
            return endpointId.equals(TaskPushSocket.class.getName());
        }

        @Override
        public Uni<CheckResult> perform(HttpUpgradeContext context) {
            HttpServerRequest req = context.httpRequest();
            String key = req.getHeader("X-Api-Key");
            if (key == null) {
                key = req.getParam("key");
            }
            Optional<Callers.Caller> caller = callers.authenticate(key);
            if (caller.isEmpty()) {
                return reject(401, key == null ? "missing API key (header X-Api-Key or query parameter key)" : "unknown API key");
            }
            Callers.Caller c = caller.get();
            String doctor = blankToNull(req.getParam("doctor"));
            String department = blankToNull(req.getParam("department"));
            switch (c.role()) {
                case OPERATOR -> {
                }
                case DOCTOR -> {
                    if (department != null || (doctor != null && !doctor.equals(c.name()))) {
                        return reject(403, "doctor " + c.name() + " may only subscribe to their own tasks");
                    }
                    doctor = c.name();
                }
                default -> {
                    return reject(403, "caller " + c.name() + " needs the operator or doctor role");
                }
            }
            long cursor = -1;
            String cur = blankToNull(req.getParam("cursor"));
            if (cur != null) {
                try {
                    cursor = Long.parseLong(cur);
                } catch (NumberFormatException e) {
                    cursor = -2;
                }
                if (cursor < 0) {
                    return reject(400, "cursor must be a qc task event id (a number >= 0), got '" + cur + "'");
                }
            }
            context.userData().put(SUBSCRIPTION, new TaskPush.Subscription(c.name(), doctor, department,
                    blankToNull(req.getParam("hospital")), cursor));
            return CheckResult.permitUpgrade();
        }

        private static Uni<CheckResult> reject(int status, String reason) {
            return CheckResult.rejectUpgrade(status, Map.of("X-Hub-Error", List.of(reason)));
        }

        private static String blankToNull(String s) {
            return s == null || s.isBlank() ? null : s.strip();
        }
    }
}
