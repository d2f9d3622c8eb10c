package org.hospitalhub.federation.network;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

import jakarta.enterprise.context.ApplicationScoped;

import org.hospitalhub.delivery.Database;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * Research projects and their steps. The initiator creates a project (invitations go to the invited nodes through the
 * outbox in the same transaction) and adds steps (each step goes to every node that has not declined, in the same
 * transaction, numbered in the initiator's order). An invited node accepts or declines; it executes only accepted
 * projects.
 */
@ApplicationScoped
public class Projects {

    public static final Set<String> SHARING_LEVELS = Set.of("aggregate-only", "de-identified-rows");
    public static final Set<String> KINDS = Set.of("cohort", "variables", "analysis");

    public record Project(String projectId, String title, String initiator, String sharingLevel, List<String> invited,
            String localStatus, Instant createdAt, Instant decidedAt, String decidedBy) {
    }

    public record Step(String stepId, String projectId, int seq, String kind, String definition, String dependsOn,
            String checksum, String origin, Instant createdAt) {
    }

    public record Participant(String nodeId, String response, Instant respondedAt) {
    }

    /** Bad input from the API: HTTP status, the field and the rule. */
    public static class InvalidRequest extends RuntimeException {
        public final int status;
        public final String field;

        public InvalidRequest(int status, String field, String message) {
            super(message);
            this.status = status;
            this.field = field;
        }
    }

    private static final ObjectMapper JSON = new ObjectMapper();

    private final Database db;
    private final NodeIdentity identity;
    private final Peers peers;
    private final FederationOutbox outbox;
    private final Inbox inbox;
    private final Executions executions;
    private final ObjectMapper mapper;

    public Projects(Database db, NodeIdentity identity, Peers peers, FederationOutbox outbox, Inbox inbox,
            Executions executions, ObjectMapper mapper) {
        this.db = db;
        this.identity = identity;
        this.peers = peers;
        this.outbox = outbox;
        this.inbox = inbox;
        this.executions = executions;
        this.mapper = mapper;
    }

    // ---- initiator ---------------------------------------------------------------------------------------------

    /**
     * Creates a project and invites its nodes; with {@code steps}, the study's steps too, in the same transaction (a
     * step's {@code dependsOn} then names the {@code ref} of an earlier entry). The answer is the project, with
     * {@code steps} ({@code ref}, {@code stepId}, {@code seq}, {@code kind}) when some were given.
     */
    public Map<String, Object> create(JsonNode body, String caller) throws SQLException {
        return create(body, caller, null).project();
    }

    /** The project a request created, or found made already by an earlier request with its Idempotency-Key. */
    public record Created(Map<String, Object> project, boolean replayed) {
    }

    /** Header values: visible ASCII, as long as the column. */
    static final String IDEMPOTENCY_KEY_PATTERN = "[\\x21-\\x7E]{1,200}";

    /**
     * {@link #create(JsonNode, String)} with an optional {@code Idempotency-Key}: the first request with a key creates
     * the project; a later one with the same key and the same JSON gets that project back (replayed, nothing created
     * or sent again, also when both arrive at once); the same key with other JSON is refused (422, nothing stored).
     */
    public Created create(JsonNode body, String caller, String idempotencyKey) throws SQLException {
        if (idempotencyKey != null && !idempotencyKey.matches(IDEMPOTENCY_KEY_PATTERN)) {
            throw new InvalidRequest(400, "Idempotency-Key", "must be 1 to 200 visible ASCII characters");
        }
        String requestSha = idempotencyKey == null ? null : NodeKeys.sha256Hex(String.valueOf(body));
        if (idempotencyKey != null) {
            Optional<Created> earlier = earlier(idempotencyKey, requestSha, body);
            if (earlier.isPresent()) {
                return earlier.get();
            }
        }
        try {
            return new Created(insertProject(body, caller, idempotencyKey, requestSha), false);
        } catch (SQLException e) {
            if (idempotencyKey != null && "23505".equals(e.getSQLState())) {
                // the same key committed by a request that ran at the same time: answer as a repeat of it
                Optional<Created> earlier = earlier(idempotencyKey, requestSha, body);
                if (earlier.isPresent()) {
                    return earlier.get();
                }
            }
            throw e;
        }
    }

    /** The project made by an earlier request with this key, if any; refused when that request was another one. */
    private Optional<Created> earlier(String key, String requestSha, JsonNode body) throws SQLException {
        String projectId;
        String sha;
        try (Connection c = db.connection(); PreparedStatement q = c.prepareStatement(
                "SELECT project_id, request_sha256 FROM fed_project WHERE idempotency_key = ?")) {
            q.setString(1, key);
            try (ResultSet rs = q.executeQuery()) {
                if (!rs.next()) {
                    return Optional.empty();
                }
                projectId = rs.getString(1);
                sha = rs.getString(2);
            }
        }
        if (!requestSha.equals(sha)) {
            throw new InvalidRequest(422, "Idempotency-Key", "was used for another request (project " + projectId
                    + "); send a new key for a new project");
        }
        Map<String, Object> out = view(projectId);
        // the plan's steps are the project's first steps, in the request's order: seq i + 1 is steps[i]
        JsonNode plan = body.get("steps");
        List<Map<String, Object>> steps = new ArrayList<>();
        List<Step> stored;
        try (Connection c = db.connection()) {
            stored = steps(c, projectId);
        }
        for (Step st : stored) {
            JsonNode entry = plan != null && plan.isArray() && st.seq() <= plan.size() ? plan.get(st.seq() - 1) : null;
            if (entry == null) {
                continue;
            }
            steps.add(planned(entry.hasNonNull("ref") ? entry.get("ref").asText() : null, st));
        }
        if (!steps.isEmpty()) {
            out.put("steps", steps);
        }
        return Optional.of(new Created(out, true));
    }

    /** A step of a plan as the answer to POST /projects lists it. */
    private static Map<String, Object> planned(String ref, Step st) {
        Map<String, Object> v = new LinkedHashMap<>();
        v.put("ref", ref);
        v.put("stepId", st.stepId());
        v.put("seq", st.seq());
        v.put("kind", st.kind());
        return v;
    }

    /** What a step's checksum covers: its definition, its dependencies and its kind (the initiator and receivers alike). */
    static String checksum(String kind, JsonNode definition, JsonNode dependsOn) {
        return NodeKeys.sha256Hex(definition.toString() + "\n" + dependsOn.toString() + "\n" + kind);
    }

    private Map<String, Object> view(String projectId) throws SQLException {
        return mapper.convertValue(find(projectId).orElseThrow(), new TypeReference<LinkedHashMap<String, Object>>() {
        });
    }

    private Map<String, Object> insertProject(JsonNode body, String caller, String idempotencyKey, String requestSha)
            throws SQLException {
        String self = identity.nodeId();
        if (body == null || !body.isObject()) {
            throw new InvalidRequest(400, "$", "body must be a JSON object");
        }
        String title = text(body, "title", 500);
        String sharing = body.hasNonNull("sharingLevel") ? text(body, "sharingLevel", 30) : "aggregate-only";
        if (!SHARING_LEVELS.contains(sharing)) {
            throw new InvalidRequest(400, "sharingLevel", "must be one of " + SHARING_LEVELS);
        }
        JsonNode nodes = body.get("invitedNodes");
        if (nodes == null || !nodes.isArray() || nodes.isEmpty()) {
            throw new InvalidRequest(400, "invitedNodes", "required non-empty array of node ids");
        }
        Set<String> invited = new LinkedHashSet<>();
        Set<String> registered = new HashSet<>();
        peers.all().forEach(peer -> registered.add(peer.nodeId()));
        for (JsonNode n : nodes) {
            String id = n.asText();
            if (!n.isTextual() || !id.matches(Peers.NODE_ID_PATTERN)) {
                throw new InvalidRequest(400, "invitedNodes", "each must be a node id (" + Peers.NODE_ID_PATTERN + ")");
            }
            if (!id.equals(self) && !registered.contains(id)) {
                throw new InvalidRequest(400, "invitedNodes", "node " + id + " is not registered");
            }
            invited.add(id);
        }
        JsonNode plan = body.get("steps");
        if (plan != null && !plan.isNull() && (!plan.isArray() || plan.size() > 50)) {
            throw new InvalidRequest(400, "steps", "must be an array of at most 50 steps");
        }
        List<NewStep> steps = new ArrayList<>();
        Set<String> refs = new HashSet<>();
        for (int i = 0; plan != null && i < plan.size(); i++) {
            String at = "steps[" + i + "]";
            JsonNode sb = plan.get(i);
            NewStep st = newStep(sb, at);
            String ref = sb.isObject() && sb.hasNonNull("ref") ? sb.get("ref").asText() : null;
            if (ref != null && (!sb.get("ref").isTextual() || !ref.matches("[a-zA-Z][a-zA-Z0-9_-]{0,40}"))) {
                throw new InvalidRequest(400, at + ".ref", "must be a short name (letters, digits, _ and -)");
            }
            Iterator<Map.Entry<String, JsonNode>> it = st.dependsOn().fields();
            while (it.hasNext()) {
                Map.Entry<String, JsonNode> e = it.next();
                if (!e.getValue().isTextual() || !refs.contains(e.getValue().asText())) {
                    throw new InvalidRequest(400, at + ".dependsOn." + e.getKey(), "must be the ref of an earlier step in steps");
                }
            }
            if (ref != null && !refs.add(ref)) {
                throw new InvalidRequest(400, at + ".ref", "'" + ref + "' names an earlier step already");
            }
            steps.add(new NewStep(st.kind(), st.definition(), st.dependsOn(), ref));
        }
        String projectId = Ids.next();
        Instant now = Instant.now();
        List<Map<String, Object>> created = new ArrayList<>();
        ArrayNode invitedJson = mapper.createArrayNode();
        invited.forEach(invitedJson::add);
        db.inTransaction(c -> {
            // its steps' reports here (the plan's, then each step added) know their initiator without looking it up
            Executions.initiatorCreated(projectId, self);
            try (PreparedStatement ins = c.prepareStatement("INSERT INTO fed_project (project_id, title, initiator, sharing_level, "
                    + "invited, local_status, created_at, decided_at, decided_by, idempotency_key, request_sha256) "
                    + "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")) {
                boolean takesPart = invited.contains(self);
                ins.setString(1, projectId);
                ins.setString(2, title);
                ins.setString(3, self);
                ins.setString(4, sharing);
                ins.setString(5, invitedJson.toString());
                ins.setString(6, takesPart ? "ACCEPTED" : "INITIATED");
                ins.setObject(7, Database.utc(now));
                ins.setObject(8, takesPart ? Database.utc(now) : null);
                ins.setString(9, takesPart ? caller : null);
                ins.setString(10, idempotencyKey);
                ins.setString(11, requestSha);
                ins.executeUpdate();
            }
            try (PreparedStatement ins = c.prepareStatement("INSERT INTO fed_participant (project_id, node_id, response, "
                    + "responded_at) VALUES (?, ?, ?, ?)")) {
                for (String node : invited) {
                    boolean me = node.equals(self);
                    ins.setString(1, projectId);
                    ins.setString(2, node);
                    ins.setString(3, me ? "ACCEPTED" : "INVITED");
                    ins.setObject(4, me ? Database.utc(now) : null);
                    ins.addBatch();
                }
                ins.executeBatch();
            }
            ObjectNode p = mapper.createObjectNode();
            p.put("title", title);
            p.put("sharingLevel", sharing);
            p.set("invited", invitedJson);
            outbox.enqueueAll(c, invited.stream().filter(node -> !node.equals(self)).toList(), Messages.INVITATION, projectId, p);
            // the study's steps in the same transaction, each message behind the invitation in every node's queue (the
            // invitation and the steps usually travel in one transmission); dependsOn names refs, stored as step ids
            // numbered 1, 2, …; every invited node takes part (none can have declined yet)
            Map<String, String> ids = new HashMap<>();
            int seq = 0;
            for (NewStep st : steps) {
                ObjectNode deps = mapper.createObjectNode();
                st.dependsOn().fields().forEachRemaining(e -> deps.put(e.getKey(), ids.get(e.getValue().asText())));
                Step added = insertStep(c, projectId, new NewStep(st.kind(), st.definition(), deps, st.ref()), ++seq, invited,
                        new ArrayList<>());
                if (st.ref() != null) {
                    ids.put(st.ref(), added.stepId());
                }
                created.add(planned(st.ref(), added));
            }
            return null;
        });
        Map<String, Object> out = view(projectId);
        if (!created.isEmpty()) {
            out.put("steps", created);
        }
        return out;
    }

    /** A step as requested: checked, not stored yet ({@code ref}: its name within a project's {@code steps}). */
    private record NewStep(String kind, JsonNode definition, JsonNode dependsOn, String ref) {
    }

    /** Checks a step's kind, definition and the shape of its dependsOn ({@code at}: where it is, for errors). */
    private NewStep newStep(JsonNode body, String at) {
        String prefix = at.isEmpty() ? "" : at + ".";
        if (body == null || !body.isObject()) {
            throw new InvalidRequest(400, at.isEmpty() ? "$" : at, "must be a JSON object");
        }
        String kind;
        try {
            kind = text(body, "kind", 20);
        } catch (InvalidRequest e) {
            throw new InvalidRequest(e.status, prefix + e.field, e.getMessage());
        }
        if (!KINDS.contains(kind)) {
            throw new InvalidRequest(400, prefix + "kind", "must be one of " + KINDS);
        }
        JsonNode definition = body.get("definition");
        if (definition == null || !definition.isObject()) {
            throw new InvalidRequest(400, prefix + "definition", "required JSON object");
        }
        if (definition.toString().length() > 200_000) {
            throw new InvalidRequest(400, prefix + "definition", "at most 200,000 characters");
        }
        JsonNode dependsOn = body.has("dependsOn") ? body.get("dependsOn") : mapper.createObjectNode();
        if (!dependsOn.isObject()) {
            throw new InvalidRequest(400, prefix + "dependsOn", "must be an object of role: stepId");
        }
        Iterator<String> roles = dependsOn.fieldNames();
        while (roles.hasNext()) {
            String role = roles.next();
            if (!role.matches("[a-z][a-zA-Z0-9_-]{0,40}")) {
                throw new InvalidRequest(400, prefix + "dependsOn", "role '" + role + "' must be a short lower-case name");
            }
        }
        return new NewStep(kind, definition, dependsOn, null);
    }

    /** A step added through the API, and this node's execution of it if it takes part: as written. */
    public record Added(Step step, List<Executions.Execution> executions) {
    }

    public Added addStep(String projectId, JsonNode body) throws SQLException {
        Set<String> named = new java.util.LinkedHashSet<>(); // the step ids dependsOn names (checked once the body is)
        boolean textual = true;
        if (body != null && body.path("dependsOn").isObject()) {
            for (JsonNode v : body.get("dependsOn")) {
                textual &= v.isTextual();
                named.add(v.asText());
            }
        }
        boolean allTextual = textual;
        return db.inTransaction(c -> {
            Added written = allTextual && Database.isPostgres(c) ? addStepAtOnce(c, projectId, body, named) : null;
            if (written != null) {
                return written;
            }
            // the project, which of the named steps are its own, its next step number and its participants: one query
            // (every round trip of a loaded initiator delays the step's way to the nodes)
            ForStep p;
            try (PreparedStatement q = c.prepareStatement(FOR_STEP)) {
                q.setArray(1, c.createArrayOf("varchar", named.toArray()));
                q.setString(2, projectId);
                try (ResultSet rs = q.executeQuery()) {
                    p = ForStep.read(rs, projectId);
                }
            }
            requireInitiatedHere(p.initiator());
            NewStep st = newStep(body, "");
            requireEarlierSteps(st, p.ofProject());
            List<Executions.Execution> mine = new ArrayList<>();
            Step step = insertStep(c, projectId, st, p.seq(), p.participants(), mine);
            return new Added(step, mine);
        });
    }

    /**
     * PostgreSQL, a well-formed body: the step checked, stored and (if this node takes part) queued here in one
     * statement, instead of a read, then a write for each (on a loaded initiator each round trip delays the step's way
     * to the nodes, and a study posted step by step waits for each answer before posting the next). The same checks
     * and answers as the statements one by one: nothing is written if the project is unknown (404), initiated
     * elsewhere (403) or a {@code dependsOn} id is not one of its steps (400). Null when the body is not well-formed:
     * the caller checks it after the project, as ever (a 404 or 403 comes first). {@code named}: the distinct step ids
     * its {@code dependsOn} names, all textual.
     */
    private Added addStepAtOnce(Connection c, String projectId, JsonNode body, Set<String> named) throws SQLException {
        NewStep st;
        try {
            st = newStep(body, "");
        } catch (InvalidRequest e) {
            return null;
        }
        String self = identity.nodeId();
        String stepId = Ids.next();
        String checksum = checksum(st.kind(), st.definition(), st.dependsOn());
        Instant now = Instant.now().truncatedTo(ChronoUnit.MICROS); // as the database keeps it
        ForStep p;
        boolean queuedHere;
        try (PreparedStatement q = c.prepareStatement("WITH p AS (" + FOR_STEP + "), "
                + "ins AS (INSERT INTO fed_step (" + STEP_ROW + ") SELECT ?, ?, p.seq, ?, ?, ?, ?, ?, ? FROM p "
                + "WHERE p.initiator = ? AND cardinality(p.named) = ? RETURNING step_id), "
                + "queued AS (INSERT INTO fed_execution (step_id, node_id, project_id, status, attempts, version, retryable, "
                + "queued_at, updated_at) SELECT ins.step_id, ?, ?, 'QUEUED', 0, 1, TRUE, ?, ? FROM ins, p "
                + "WHERE ? = ANY(p.participants) RETURNING 1) "
                + "SELECT p.initiator, p.named, p.seq, p.participants, (SELECT COUNT(*) FROM ins), (SELECT COUNT(*) FROM queued) "
                + "FROM p")) {
            int i = 1;
            q.setArray(i++, c.createArrayOf("varchar", named.toArray()));
            q.setString(i++, projectId);
            q.setString(i++, stepId);
            q.setString(i++, projectId);
            q.setString(i++, st.kind());
            q.setString(i++, st.definition().toString());
            q.setString(i++, st.dependsOn().toString());
            q.setString(i++, checksum);
            q.setString(i++, self);
            q.setObject(i++, Database.utc(now));
            q.setString(i++, self);
            q.setInt(i++, named.size());
            q.setString(i++, self);
            q.setString(i++, projectId);
            q.setObject(i++, Database.utc(now));
            q.setObject(i++, Database.utc(now));
            q.setString(i, self);
            try (ResultSet rs = q.executeQuery()) {
                p = ForStep.read(rs, projectId);
                requireInitiatedHere(p.initiator());
                requireEarlierSteps(st, p.ofProject());
                if (rs.getLong(5) != 1) {
                    throw new SQLException("step " + stepId + " of project " + projectId + " was not stored");
                }
                queuedHere = rs.getLong(6) == 1;
            }
        }
        Step step = new Step(stepId, projectId, p.seq(), st.kind(), st.definition().toString(), st.dependsOn().toString(),
                checksum, self, now);
        List<Executions.Execution> mine = new ArrayList<>();
        if (queuedHere) {
            Executions.Execution queued = executions.queuedNow(projectId, stepId, now);
            executions.report(c, queued, null);
            mine.add(queued);
        }
        outbox.enqueueAll(c, p.participants().stream().filter(node -> !node.equals(self)).toList(), Messages.STEP, projectId,
                stepMessage(step, st));
        return new Added(step, mine);
    }

    /**
     * What a new step is checked and numbered by: the project's initiator, which of the step ids named (parameter 1, an
     * array) are its steps, its next step number and its participants (all but those that declined); the project is
     * parameter 2. One row, none if there is no such project.
     */
    private static final String FOR_STEP = "SELECT p.initiator, ARRAY(SELECT s.step_id FROM fed_step s WHERE s.project_id = "
            + "p.project_id AND s.step_id = ANY(?)) AS named, (SELECT COALESCE(MAX(seq), 0) + 1 FROM fed_step s WHERE "
            + "s.project_id = p.project_id) AS seq, ARRAY(SELECT node_id FROM fed_participant f WHERE f.project_id = "
            + "p.project_id AND f.response IS DISTINCT FROM 'DECLINED' ORDER BY node_id) AS participants FROM fed_project p "
            + "WHERE p.project_id = ?";

    /** A row of {@link #FOR_STEP}. */
    private record ForStep(String initiator, Set<String> ofProject, int seq, List<String> participants) {

        /** The row its first four columns hold; 404 if there is none. */
        static ForStep read(ResultSet rs, String projectId) throws SQLException {
            if (!rs.next()) {
                throw new InvalidRequest(404, "projectId", "no project " + projectId);
            }
            Set<String> ofProject = new HashSet<>();
            for (Object id : (Object[]) rs.getArray(2).getArray()) {
                ofProject.add((String) id);
            }
            List<String> participants = new ArrayList<>();
            for (Object node : (Object[]) rs.getArray(4).getArray()) {
                participants.add((String) node);
            }
            return new ForStep(rs.getString(1), ofProject, rs.getInt(3), participants);
        }
    }

    /** Steps are added on the project's initiator only: else 403. */
    private void requireInitiatedHere(String initiator) {
        if (!initiator.equals(identity.nodeId())) {
            throw new InvalidRequest(403, "projectId", "steps are added on the initiator node " + initiator);
        }
    }

    /** Each step id the new step's {@code dependsOn} names must be one of the project's steps ({@code ofProject}): else 400. */
    private static void requireEarlierSteps(NewStep st, Set<String> ofProject) {
        Iterator<Map.Entry<String, JsonNode>> it = st.dependsOn().fields();
        while (it.hasNext()) {
            Map.Entry<String, JsonNode> e = it.next();
            if (!e.getValue().isTextual() || !ofProject.contains(e.getValue().asText())) {
                throw new InvalidRequest(400, "dependsOn." + e.getKey(), "must be the id of an earlier step of this project");
            }
        }
    }

    /** The view of a step the API answers with, from what was just written. */
    public Map<String, Object> stepDetails(Added added) {
        return stepView(added.step(), added.executions());
    }

    /** The step's row as the initiator writes it (a receiving node stores it with its checks: Executions#receive). */
    static void insert(Connection c, Step s) throws SQLException {
        try (PreparedStatement ins = c.prepareStatement(INSERT_STEP)) {
            bindStep(ins, 1, s);
            ins.executeUpdate();
        }
    }

    /** fed_step's columns, in the order {@link #bindStep} binds them and {@link #step(ResultSet, int)} reads them. */
    static final String STEP_ROW = "step_id, project_id, seq, kind, definition, depends_on, checksum, origin, created_at";
    /** The step's row; its values are parameters 1 … 9 ({@link #bindStep}). */
    private static final String INSERT_STEP = "INSERT INTO fed_step (" + STEP_ROW + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";

    /** Binds the step's values as parameters {@code from} … {@code from + 8}; returns the next parameter's index. */
    static int bindStep(PreparedStatement ins, int from, Step s) throws SQLException {
        ins.setString(from, s.stepId());
        ins.setString(from + 1, s.projectId());
        ins.setInt(from + 2, s.seq());
        ins.setString(from + 3, s.kind());
        ins.setString(from + 4, s.definition());
        ins.setString(from + 5, s.dependsOn());
        ins.setString(from + 6, s.checksum());
        ins.setString(from + 7, s.origin());
        ins.setObject(from + 8, Database.utc(s.createdAt()));
        return from + 9;
    }

    /**
     * Stores a checked step as number {@code seq}, queues it here if this node is among the {@code participants}
     * (its execution added to {@code mine}), and its message to the other participants.
     */
    private Step insertStep(Connection c, String projectId, NewStep st, int seq, Collection<String> participants,
            List<Executions.Execution> mine) throws SQLException {
        String kind = st.kind();
        JsonNode definition = st.definition();
        JsonNode dependsOn = st.dependsOn();
        String stepId = Ids.next();
        String checksum = checksum(kind, definition, dependsOn);
        Step step = new Step(stepId, projectId, seq, kind, definition.toString(), dependsOn.toString(), checksum,
                identity.nodeId(), Instant.now().truncatedTo(ChronoUnit.MICROS)); // as the database keeps it
        insert(c, step);
        ObjectNode p = stepMessage(step, st);
        List<String> others = new ArrayList<>();
        for (String node : participants) {
            if (node.equals(identity.nodeId())) {
                // the step is already stored: only its execution here
                Optional<Executions.Execution> queued = executions.queue(c, projectId, stepId);
                if (queued.isPresent()) {
                    executions.report(c, queued.get(), null);
                    mine.add(queued.get());
                }
            } else {
                others.add(node);
            }
        }
        outbox.enqueueAll(c, others, Messages.STEP, projectId, p);
        return step; // as written (read back it would cost a round trip)
    }

    /** The payload of a step's message to the participants. */
    private ObjectNode stepMessage(Step step, NewStep st) {
        ObjectNode p = mapper.createObjectNode();
        p.put("stepId", step.stepId());
        p.put("seq", step.seq());
        p.put("kind", step.kind());
        p.set("definition", st.definition());
        p.set("dependsOn", st.dependsOn());
        p.put("checksum", step.checksum());
        return p;
    }

    /** Asks a participant to run a failed step again (on this node: at once). */
    public void requestRetry(String projectId, String stepId, String node) throws SQLException {
        Project project = find(projectId).orElseThrow(() -> new InvalidRequest(404, "projectId", "no project " + projectId));
        db.inTransaction(c -> {
            Step step = step(c, stepId).filter(s -> s.projectId().equals(projectId))
                    .orElseThrow(() -> new InvalidRequest(404, "stepId", "no step " + stepId + " in project " + projectId));
            String target = node == null ? identity.nodeId() : node;
            if (target.equals(identity.nodeId())) {
                if (executions.transition(c, step.stepId(), Executions.Status.FAILED, Executions.Status.QUEUED,
                        "retry requested through the API", false, true, null, null).isEmpty()) {
                    throw new InvalidRequest(409, "stepId", "step " + stepId + " has not failed on node " + target);
                }
                return null;
            }
            if (!project.initiator().equals(identity.nodeId())) {
                throw new InvalidRequest(403, "node", "only the initiator asks another node to retry");
            }
            Optional<Executions.Execution> e = executions.find(c, stepId, target);
            if (e.isEmpty() || e.get().status() != Executions.Status.FAILED) {
                throw new InvalidRequest(409, "stepId", "step " + stepId + " is not reported failed on node " + target);
            }
            ObjectNode p = mapper.createObjectNode();
            p.put("stepId", stepId);
            outbox.enqueue(c, target, Messages.STEP_RETRY, projectId, p);
            return null;
        });
    }

    // ---- invited node -------------------------------------------------------------------------------------------

    public Project decide(String projectId, boolean accept, String caller) throws SQLException {
        return db.inTransaction(c -> {
            Project p = find(c, projectId).orElseThrow(() -> new InvalidRequest(404, "projectId", "no project " + projectId));
            if (p.initiator().equals(identity.nodeId())) {
                throw new InvalidRequest(409, "projectId", "this node initiated the project");
            }
            String to = accept ? "ACCEPTED" : "DECLINED";
            if (p.localStatus().equals(to)) {
                return p;
            }
            if (!"INVITED".equals(p.localStatus())) {
                throw new InvalidRequest(409, "projectId", "the project was already " + p.localStatus().toLowerCase());
            }
            try (PreparedStatement up = c.prepareStatement("UPDATE fed_project SET local_status = ?, decided_at = ?, decided_by = ? "
                    + "WHERE project_id = ? AND local_status = 'INVITED'")) {
                up.setString(1, to);
                up.setObject(2, Database.utc(Instant.now()));
                up.setString(3, caller);
                up.setString(4, projectId);
                up.executeUpdate();
            }
            inbox.answered(c, projectId, p.initiator(), accept);
            return find(c, projectId).orElseThrow();
        });
    }

    // ---- queries ---------------------------------------------------------------------------------------------------

    public Optional<Project> find(String projectId) throws SQLException {
        try (Connection c = db.connection()) {
            return find(c, projectId);
        }
    }

    static Optional<Project> find(Connection c, String projectId) throws SQLException {
        try (PreparedStatement q = c.prepareStatement("SELECT project_id, title, initiator, sharing_level, invited, local_status, "
                + "created_at, decided_at, decided_by FROM fed_project WHERE project_id = ?")) {
            q.setString(1, projectId);
            try (ResultSet rs = q.executeQuery()) {
                return rs.next() ? Optional.of(project(rs)) : Optional.empty();
            }
        }
    }

    public List<Project> list() throws SQLException {
        List<Project> out = new ArrayList<>();
        try (Connection c = db.connection(); PreparedStatement q = c.prepareStatement("SELECT project_id, title, initiator, "
                + "sharing_level, invited, local_status, created_at, decided_at, decided_by FROM fed_project ORDER BY created_at DESC, project_id");
                ResultSet rs = q.executeQuery()) {
            while (rs.next()) {
                out.add(project(rs));
            }
        }
        return out;
    }

    private static Project project(ResultSet rs) throws SQLException {
        return project(rs, 0);
    }

    /** The columns of {@link #PROJECT_COLUMNS} (with the alias {@code p}) read after the first {@code skip} ones. */
    static Project project(ResultSet rs, int skip) throws SQLException {
        List<String> invited = new ArrayList<>();
        try {
            JSON.readTree(rs.getString(skip + 5)).forEach(n -> invited.add(n.asText()));
        } catch (JsonProcessingException e) {
            throw new SQLException("fed_project.invited is not JSON", e);
        }
        return new Project(rs.getString(skip + 1), rs.getString(skip + 2), rs.getString(skip + 3), rs.getString(skip + 4),
                invited, rs.getString(skip + 6), instant(rs, skip + 7), instant(rs, skip + 8), rs.getString(skip + 9));
    }

    /** A project's columns as {@link #project(ResultSet, int)} reads them, from the table aliased {@code p}. */
    static final String PROJECT_COLUMNS = "p.project_id, p.title, p.initiator, p.sharing_level, p.invited, p.local_status, "
            + "p.created_at, p.decided_at, p.decided_by";

    /** A step's columns as {@link #step(ResultSet, int)} reads them, from the table aliased {@code s}. */
    static final String STEP_COLUMNS = "s." + STEP_ROW.replace(", ", ", s.");

    static Optional<Step> step(Connection c, String stepId) throws SQLException {
        try (PreparedStatement q = c.prepareStatement("SELECT " + STEP_COLUMNS + " FROM fed_step s WHERE s.step_id = ?")) {
            q.setString(1, stepId);
            try (ResultSet rs = q.executeQuery()) {
                return rs.next() ? Optional.of(step(rs)) : Optional.empty();
            }
        }
    }

    static String stepProject(Database db, String stepId) throws SQLException {
        try (Connection c = db.connection()) {
            return step(c, stepId).map(Step::projectId).orElse(null);
        }
    }

    static List<Step> steps(Connection c, String projectId) throws SQLException {
        List<Step> out = new ArrayList<>();
        try (PreparedStatement q = c.prepareStatement("SELECT " + STEP_COLUMNS + " FROM fed_step s WHERE s.project_id = ? "
                + "ORDER BY s.seq")) {
            q.setString(1, projectId);
            try (ResultSet rs = q.executeQuery()) {
                while (rs.next()) {
                    out.add(step(rs));
                }
            }
        }
        return out;
    }

    private static Step step(ResultSet rs) throws SQLException {
        return step(rs, 0);
    }

    static Step step(ResultSet rs, int skip) throws SQLException {
        return new Step(rs.getString(skip + 1), rs.getString(skip + 2), rs.getInt(skip + 3), rs.getString(skip + 4),
                rs.getString(skip + 5), rs.getString(skip + 6), rs.getString(skip + 7), rs.getString(skip + 8),
                instant(rs, skip + 9));
    }

    static List<Participant> participants(Connection c, String projectId) throws SQLException {
        List<Participant> out = new ArrayList<>();
        try (PreparedStatement q = c.prepareStatement("SELECT node_id, response, responded_at FROM fed_participant "
                + "WHERE project_id = ? ORDER BY node_id")) {
            q.setString(1, projectId);
            try (ResultSet rs = q.executeQuery()) {
                while (rs.next()) {
                    out.add(new Participant(rs.getString(1), rs.getString(2), instant(rs, 3)));
                }
            }
        }
        return out;
    }

    /** Everything about a project as the REST API shows it. */
    public Map<String, Object> details(String projectId) throws SQLException {
        try (Connection c = db.connection()) {
            Project p = find(c, projectId).orElseThrow(() -> new InvalidRequest(404, "projectId", "no project " + projectId));
            Map<String, Object> out = new LinkedHashMap<>();
            out.put("project", p);
            out.put("participants", participants(c, projectId));
            List<Map<String, Object>> steps = new ArrayList<>();
            List<Executions.Execution> all = executions.ofProject(c, projectId);
            for (Step s : steps(c, projectId)) {
                steps.add(stepView(s, all));
            }
            out.put("steps", steps);
            return out;
        }
    }

    public Map<String, Object> stepDetails(String projectId, String stepId) throws SQLException {
        try (Connection c = db.connection()) {
            Step s = step(c, stepId).filter(x -> x.projectId().equals(projectId))
                    .orElseThrow(() -> new InvalidRequest(404, "stepId", "no step " + stepId + " in project " + projectId));
            return stepView(s, executions.ofProject(c, projectId));
        }
    }

    private Map<String, Object> stepView(Step s, List<Executions.Execution> all) {
        Map<String, Object> v = new LinkedHashMap<>();
        v.put("stepId", s.stepId());
        v.put("seq", s.seq());
        v.put("kind", s.kind());
        try {
            v.put("definition", mapper.readTree(s.definition()));
            v.put("dependsOn", mapper.readTree(s.dependsOn()));
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
        v.put("checksum", s.checksum());
        v.put("createdAt", s.createdAt());
        v.put("nodes", all.stream().filter(e -> e.stepId().equals(s.stepId())).toList());
        return v;
    }

    /** The results of a step per node, as returned to the initiator. */
    public Map<String, JsonNode> results(String projectId, String stepId) throws SQLException {
        Map<String, JsonNode> out = new LinkedHashMap<>();
        try (Connection c = db.connection(); PreparedStatement q = c.prepareStatement("SELECT node_id, result FROM fed_result "
                + "WHERE project_id = ? AND step_id = ? ORDER BY node_id")) {
            q.setString(1, projectId);
            q.setString(2, stepId);
            try (ResultSet rs = q.executeQuery()) {
                while (rs.next()) {
                    out.put(rs.getString(1), mapper.readTree(rs.getString(2)));
                }
            }
        } catch (JsonProcessingException e) {
            throw new SQLException("fed_result.result is not JSON", e);
        }
        return out;
    }

    private static String text(JsonNode body, String field, int max) {
        JsonNode v = body.get(field);
        if (v == null || !v.isTextual() || v.asText().isBlank()) {
            throw new InvalidRequest(400, field, "required text");
        }
        if (v.asText().length() > max) {
            throw new InvalidRequest(400, field, "at most " + max + " characters");
        }
        return v.asText().strip();
    }

    private static Instant instant(ResultSet rs, int i) throws SQLException {
        OffsetDateTime t = rs.getObject(i, OffsetDateTime.class);
        return t == null ? null : t.toInstant();
    }
}
