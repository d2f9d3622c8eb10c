package org.hospitalhub.bench;

import org.hospitalhub.bench.shared.ChildHub;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The qc benchmark (issue #3, section 8; see bench/README.md "qc benchmark"): the packaged hub on PostgreSQL with the
 * shipped outbox-source -> qc-sink flow, first loaded with open tasks whose timers are pending (default
 * 100,000), then offered clinical events over HTTP at a fixed rate (default 1,000 events/s for 300 s, one event per
 * request, as a HIS sends them). Reports event-to-task latency, timer firing lateness, the hub's CPU and RSS, prints a
 * table and writes the qc section of bench/RESULTS.md (the delivery benchmark's part of the file is kept).
 * Arguments: [SECONDS [RATE]] --root &lt;hub checkout&gt; --work &lt;work folder&gt; --results &lt;RESULTS.md&gt; --command &lt;as typed&gt;.
 */
public final class QcBench {

    static final double TARGET_LATENCY_P99_MS = 200;
    static final double TARGET_LATENESS_P99_MS = 2000;
    static final String DB = "bench_qc";
    static final String HOSPITAL = "bench";
    static final String KEY = "bench-his-key";
    static final String FLOW = "bench-qc";
    static final String[] DEPARTMENTS = { "CARDIO", "NEURO", "ICU", "ORTHO", "GASTRO", "PULMO", "NEPHRO", "ONCO", "GYN", "PED",
            "URO", "ENT", "DERM", "HEMAT", "ENDO", "RHEUM", "INFECT", "GERI", "BURN", "REHAB" };
    static final String[] DOCUMENTS = { "first-progress-note", "admission-record", "attending-round-note", "progress-note" };
    static final String[] LEVELS = { "critical", "serious", "stable" };

    private final Path root;
    private final Path work;
    private final Path results;
    private final String command;
    private final int seconds;
    private final int rate;
    private final int openTasks = Bench.env("BENCH_QC_OPEN_TASKS", 100_000);
    private final int deadlineSeconds = Bench.env("BENCH_QC_DEADLINE_SECONDS", 30);
    /** Seconds of load before the measured SECONDS (JIT and caches warm up): reported apart, not in the percentiles. */
    private final int warmupSeconds = Bench.env("BENCH_QC_WARMUP_SECONDS", 60);
    private final int inFlight = Bench.env("BENCH_QC_IN_FLIGHT", 256);
    private final int batchSize = Bench.env("BENCH_QC_BATCH", 100);
    private final int batchTimeoutMs = Bench.env("BENCH_QC_BATCH_TIMEOUT_MS", 50);
    private final int pollMs = Bench.env("BENCH_QC_POLL_MS", 50);
    private final boolean batchPerPoll = !"false".equals(System.getenv("BENCH_QC_BATCH_PER_POLL"));
    private final int settleMinutes = Bench.env("BENCH_QC_SETTLE_MINUTES", 15);
    private final String hubJavaOpts = Bench.envText("BENCH_QC_HUB_JAVA_OPTS", "-Xmx256m -XX:+UseSerialGC");
    private final Pg pg = new Pg(Bench.envText("BENCH_PG_URL", "jdbc:postgresql://127.0.0.1:5432/"),
            Bench.envText("BENCH_PG_USER", "postgres"), Bench.envText("BENCH_PG_PASSWORD", ""));
    private final Random random = new Random(42);
    private final HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
            .connectTimeout(Duration.ofSeconds(5)).executor(Executors.newFixedThreadPool(4)).build();
    private URI events;

    // figures
    private final Map<String, String> notes = new java.util.LinkedHashMap<>();
    private String loadAvgStart;
    private String loadAvgEnd;
    private int preloadVisits;
    private long preloadedOpen;
    private long preloadedTriggers;
    private double preloadSeconds;
    private long offered;
    private double loadSeconds;
    private long rejected;
    private double hubCpuSeconds;
    private double machineBusy = Double.NaN;
    private long peakRssKb = -1;
    private long maxRssDuringLoadKb = -1;
    private List<Double> committedMs = List.of();
    private List<Double> computedMs = List.of();
    /** event -> task committed per minute of the load (by send time): warm-up and periodic work show here. */
    private final Map<Integer, List<Double>> committedByMinute = new java.util.TreeMap<>();
    /** BENCH_QC_SLICE_SECONDS (0 = off): also report the measured load in slices this long (for trials). */
    private final int sliceSeconds = Bench.env("BENCH_QC_SLICE_SECONDS", 0);
    private final Map<Integer, List<Double>> committedBySlice = new java.util.TreeMap<>();
    private List<Double> latenessMs = List.of();
    private long unfiredTimers = -1;
    private long undelivered;
    private long deadLetters = -1;
    private Map<String, Long> tasksByStatus = Map.of();

    private QcBench(Path root, Path work, Path results, String command, int seconds, int rate) {
        this.root = root;
        this.work = work;
        this.results = results;
        this.command = command;
        this.seconds = seconds;
        this.rate = rate;
    }

    public static void main(String[] args) throws Exception {
        Path root = Path.of("..");
        Path work = Path.of("work/qc");
        Path results = Path.of("RESULTS.md");
        String command = "bench/run-qc.sh";
        List<Integer> numbers = new ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--root" -> root = Path.of(args[++i]);
                case "--work" -> work = Path.of(args[++i]);
                case "--results" -> results = Path.of(args[++i]);
                case "--command" -> command = args[++i];
                default -> numbers.add(Integer.parseInt(args[i].replace("_", "").replace(",", "")));
            }
        }
        int seconds = numbers.size() > 0 ? numbers.get(0) : 300;
        int rate = numbers.size() > 1 ? numbers.get(1) : 1000;
        if (seconds < 10 || rate < 1) {
            throw new IllegalArgumentException("usage: bench/run-qc.sh [SECONDS >= 10] [RATE events/s]");
        }
        new QcBench(root.toAbsolutePath().normalize(), work.toAbsolutePath().normalize(), results, command, seconds, rate).run();
    }

    private void run() throws Exception {
        Files.createDirectories(work);
        loadAvgStart = Bench.loadAverage();
        System.out.printf("qc benchmark: %,d open tasks preloaded, then %,d events/s for %d s; emergency consultations "
                + "due %d s after the request%n", openTasks, rate, seconds, deadlineSeconds);
        pg.recreate(DB);
        Path routes = Files.createDirectories(work.resolve("routes"));
        Path rules = Files.createDirectories(work.resolve("rules"));
        Files.writeString(routes.resolve("bench-qc.camel.yaml"), flows());
        Files.writeString(rules.resolve("bench.yaml"), rules());
        Map<String, String> env = Map.of(
                "QUARKUS_PROFILE", "postgres",
                "HUB_DB_URL", pg.url(DB),
                "HUB_DB_USERNAME", pg.user,
                "HUB_DB_PASSWORD", pg.password,
                "HUB_ROUTES_DIR", routes.toString(),
                "HUB_QC_RULES_DIR", rules.toString(),
                "HUB_AUTH_CLIENTS", "his:source:" + KEY);
        try (ChildHub hub = ChildHub.start("hub", root, work, work, hubJavaOpts, ChildHub.freePort(), env)) {
            Runtime.getRuntime().addShutdownHook(new Thread(hub::close));
            hub.awaitStarted(Duration.ofMinutes(3));
            events = URI.create("http://127.0.0.1:" + hub.port + "/api/v1/events");
            System.out.println("hub up (pid " + hub.pid() + "), log " + hub.log());
            preload();
            load(hub);
            settle();
            peakRssKb = hub.kb("VmHWM");
            measure();
        }
        loadAvgEnd = Bench.loadAverage();
        String table = table();
        System.out.println();
        System.out.println(table);
        writeResults(table);
        System.out.println("Written (qc section): " + results);
        http.executor().ifPresent(e -> ((ExecutorService) e).shutdownNow());
    }

    private String flows() {
        return """
                # qc benchmark: every qc.* event of the hub's store to the task engine, in small, quick batches
                - templatedRoute:
                    routeTemplateRef: outbox-source
                    routeId: bench-qc-source
                    parameters:
                      - {name: flowId, value: %s}
                      - {name: types, value: "qc.*"}
                      - {name: completionSize, value: "%d"}
                      - {name: completionTimeout, value: "%d"}
                      - {name: pollPeriod, value: "%d"}
                      - {name: batchPerPoll, value: "%s"}
                - templatedRoute:
                    routeTemplateRef: qc-sink
                    routeId: bench-qc-sink
                    parameters:
                      - {name: flowId, value: %s}
                """.formatted(FLOW, batchSize, batchTimeoutMs, pollMs, batchPerPoll, FLOW);
    }

    private String rules() {
        return """
                # qc benchmark: the regulation's defaults, except emergency consultations due %d s after the request with
                # a reminder halfway, so that timers fire while the load runs
                hospital: %s
                rules:
                  - id: consultation-emergency
                    trigger: {event: qc.consultation.requested, when: {urgency: emergency}}
                    instanceKey: consultationId
                    document: consultation-record
                    deadline: %ds
                    reminders: [%ds]
                    recipients: [department:consultedDepartment]
                    points: 2
                """.formatted(deadlineSeconds, HOSPITAL, deadlineSeconds, deadlineSeconds - deadlineSeconds / 2);
    }

    // ---- events -----------------------------------------------------------------------------------------------------

    private static String envelope(String id, String type, String visit, Instant at, String payload) {
        return "{\"eventId\":\"" + id + "\",\"type\":\"" + type + "\",\"source\":\"his\",\"hospital\":\"" + HOSPITAL
                + "\",\"key\":\"" + visit + "\",\"occurredAt\":\"" + at.atOffset(ZoneOffset.ofHours(8)) + "\",\"payload\":{"
                + "\"patientId\":\"P" + visit + "\",\"visitId\":\"" + visit + "\"" + payload + "}}";
    }

    private static String admission(String id, String visit, Instant at, int n) {
        return envelope(id, "qc.admission", visit, at, ",\"department\":\"" + DEPARTMENTS[n % DEPARTMENTS.length]
                + "\",\"attendingDoctor\":\"DR-" + (n % 400) + "\"");
    }

    // ---- preload ----------------------------------------------------------------------------------------------------

    /** Admissions spread over the last 6 hours: 4 open tasks each (24 h, 8 h, 48 h, 3 days), all timers pending. */
    private void preload() throws Exception {
        preloadVisits = (openTasks + 3) / 4;
        System.out.printf("Preloading %,d admissions (%,d open tasks) ...%n", preloadVisits, preloadVisits * 4L);
        long t0 = System.nanoTime();
        Instant now = Instant.now();
        ExecutorService pool = Executors.newFixedThreadPool(4);
        List<java.util.concurrent.Future<?>> sent = new ArrayList<>();
        for (int from = 0; from < preloadVisits; from += 500) {
            StringBuilder body = new StringBuilder("[");
            for (int i = from; i < Math.min(preloadVisits, from + 500); i++) {
                if (i > from) {
                    body.append(',');
                }
                Instant at = now.minusSeconds(random.nextInt(6 * 3600 - 120) + 60);
                body.append(admission("B-" + i, "B" + i, at, i));
            }
            String b = body.append(']').toString();
            sent.add(pool.submit(() -> {
                HttpResponse<String> r = http.send(post(b), HttpResponse.BodyHandlers.ofString());
                if (r.statusCode() != 202) {
                    throw new IllegalStateException("preload refused: " + r.statusCode() + " " + r.body());
                }
                return null;
            }));
        }
        for (var f : sent) {
            f.get(10, TimeUnit.MINUTES);
        }
        pool.shutdown();
        long want = preloadVisits * 4L;
        long last = -1;
        long lastChange = System.nanoTime();
        while (true) {
            long open = count("SELECT count(*) FROM qc_task WHERE status = 'OPEN' AND timer_due_at IS NOT NULL");
            if (open >= want) {
                break;
            }
            if (open != last) {
                last = open;
                lastChange = System.nanoTime();
                System.out.printf("  %,d of %,d open tasks with timers (%.0f s)%n", open, want, (System.nanoTime() - t0) / 1e9);
            } else if (System.nanoTime() - lastChange > TimeUnit.MINUTES.toNanos(5)) {
                throw new IllegalStateException("preload stuck at " + open + " open tasks with timers");
            }
            Thread.sleep(5000);
        }
        preloadSeconds = (System.nanoTime() - t0) / 1e9;
        preloadedOpen = count("SELECT count(*) FROM qc_task WHERE status = 'OPEN'");
        preloadedTriggers = count("SELECT count(*) FROM qc_timer");
        try (Connection c = pg.connect(DB); Statement s = c.createStatement()) {
            s.execute("VACUUM ANALYZE"); // as autovacuum would have by now on a long-running hub
        }
        System.out.printf("  %,d open tasks, %,d timers pending, in %.0f s%n", preloadedOpen, preloadedTriggers,
                preloadSeconds);
    }

    private HttpRequest post(String body) {
        return HttpRequest.newBuilder(events).timeout(Duration.ofSeconds(60)).header("X-Api-Key", KEY)
                .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body)).build();
    }

    // ---- load -------------------------------------------------------------------------------------------------------

    /** One visit in the hospital: how many documents it has written, its consultations and transfers. */
    private static final class Visit {
        final String id;
        int documents;
        int seq;

        Visit(String id) {
            this.id = id;
        }
    }

    private final Map<String, Long> sentMicros = new ConcurrentHashMap<>();
    private final Map<String, String> kindOf = new ConcurrentHashMap<>();
    private long loadStartMillis;
    private long measuredStartMillis;
    private long loadEndMillis;

    /**
     * Events at a fixed rate, one per request, at most {@code inFlight} requests open: admissions of new visits (20 %),
     * documents completed (35 %), condition changes (15 %), emergency (10 %) and routine (5 %) consultations,
     * transfers in (5 %), discharges (10 %), on the visits in the hospital (preloaded and admitted meanwhile).
     */
    private void load(ChildHub hub) throws Exception {
        List<Visit> inHospital = new ArrayList<>();
        for (int i = 0; i < preloadVisits; i++) {
            inHospital.add(new Visit("B" + i));
        }
        ConcurrentLinkedQueue<Visit> admitted = new ConcurrentLinkedQueue<>();
        Semaphore open = new Semaphore(inFlight);
        // one keep-alive connection per request that may be open (the JDK client cost the hub a third of a core here)
        PlainHttp client = new PlainHttp(events, inFlight, "X-Api-Key: " + KEY + "\r\nContent-Type: application/json\r\n");
        AtomicLong refused = new AtomicLong();
        AtomicLong failed = new AtomicLong();
        long base = System.currentTimeMillis() * 1000;
        long baseNanos = System.nanoTime();
        double cpu0 = hub.cpuSeconds();
        long[] machine0 = machineTicks();
        long n = 0;
        int newVisits = 0;
        System.out.printf("Load: %,d events/s for %d s of warm-up, then %d s measured ...%n", rate, warmupSeconds, seconds);
        loadStartMillis = System.currentTimeMillis();
        measuredStartMillis = loadStartMillis + warmupSeconds * 1000L;
        long start = System.nanoTime();
        long nextRss = start;
        long total = (long) rate * (seconds + warmupSeconds);
        while (n < total) {
            long now = System.nanoTime();
            if (now >= nextRss) {
                maxRssDuringLoadKb = Math.max(maxRssDuringLoadKb, hub.kb("VmRSS"));
                nextRss = now + TimeUnit.SECONDS.toNanos(1);
            }
            long due = Math.min(total, (long) ((now - start) / 1e9 * rate) + 1);
            while (n < due) {
                for (Visit v; (v = admitted.poll()) != null;) {
                    inHospital.add(v);
                }
                String id = "L-" + n;
                Instant at = Instant.now();
                int dice = random.nextInt(100);
                String kind;
                String body;
                Visit admittedVisit = null;
                if (dice < 20 || inHospital.size() < 100) {
                    kind = "admission";
                    admittedVisit = new Visit("N" + newVisits);
                    body = admission(id, admittedVisit.id, at, newVisits++);
                } else {
                    int pick = random.nextInt(inHospital.size());
                    Visit v = inHospital.get(pick);
                    v.seq++;
                    if (dice < 55) {
                        kind = "document";
                        String doc = DOCUMENTS[Math.min(v.documents++, DOCUMENTS.length - 1)];
                        body = envelope(id, "qc.document.completed", v.id, at, ",\"documentType\":\"" + doc
                                + "\",\"documentId\":\"" + id + "\",\"author\":\"DR-W\"");
                    } else if (dice < 70) {
                        kind = "condition";
                        body = envelope(id, "qc.condition.changed", v.id, at, ",\"level\":\"" + LEVELS[v.seq % 3] + "\"");
                    } else if (dice < 85) {
                        kind = dice < 80 ? "consultation-emergency" : "consultation-routine";
                        body = envelope(id, "qc.consultation.requested", v.id, at, ",\"consultationId\":\"" + id
                                + "\",\"urgency\":\"" + (dice < 80 ? "emergency" : "routine") + "\",\"department\":\"CARDIO\","
                                + "\"consultedDepartment\":\"" + DEPARTMENTS[v.seq % DEPARTMENTS.length] + "\"");
                    } else if (dice < 90) {
                        kind = "transfer-in";
                        body = envelope(id, "qc.transfer.in", v.id, at, ",\"transferId\":\"" + id + "\",\"department\":\""
                                + DEPARTMENTS[(v.seq + 7) % DEPARTMENTS.length] + "\",\"attendingDoctor\":\"DR-T" + (v.seq % 50) + "\"");
                    } else {
                        kind = "discharge";
                        body = envelope(id, "qc.discharge", v.id, at, ",\"department\":\"CARDIO\"");
                        inHospital.set(pick, inHospital.get(inHospital.size() - 1));
                        inHospital.remove(inHospital.size() - 1);
                    }
                }
                open.acquire();
                long sendMicros = base + (System.nanoTime() - baseNanos) / 1000;
                sentMicros.put(id, sendMicros);
                kindOf.put(id, kind);
                Visit newcomer = admittedVisit;
                client.post(body, (status, e) -> {
                    open.release();
                    if (e != null) {
                        failed.incrementAndGet();
                    } else if (status != 202) {
                        refused.incrementAndGet();
                    } else if (newcomer != null) {
                        admitted.add(newcomer); // later events of the visit only once its admission is stored
                    }
                });
                n++;
            }
            Thread.sleep(1);
        }
        open.acquire(inFlight); // every request answered
        open.release(inFlight);
        client.close();
        loadSeconds = (System.nanoTime() - start) / 1e9;
        loadEndMillis = System.currentTimeMillis();
        hubCpuSeconds = hub.cpuSeconds() - cpu0;
        long[] machine1 = machineTicks();
        if (machine0 != null && machine1 != null && machine1[0] > machine0[0]) {
            machineBusy = 100.0 * (machine1[1] - machine0[1]) / (machine1[0] - machine0[0]);
        }
        offered = n;
        rejected = refused.get() + failed.get();
        if (rejected > 0) {
            notes.put("requests not accepted", refused.get() + " answered other than 202, " + failed.get() + " failed");
        }
        System.out.printf("  %,d events sent in %.1f s (%,.0f/s); %,d not accepted%n", n, loadSeconds, n / loadSeconds, rejected);
    }

    /** Waits until the qc flow has delivered every event, then until every timer due by the end has had time to fire. */
    private void settle() throws Exception {
        long t0 = System.nanoTime();
        while (count("SELECT count(*) FROM hub_delivery WHERE flow = '" + FLOW + "' AND status = 'PENDING'") > 0) {
            if (System.nanoTime() - t0 > TimeUnit.MINUTES.toNanos(settleMinutes)) {
                notes.put("settle", "events still pending " + settleMinutes + " min after the load (BENCH_QC_SETTLE_MINUTES)");
                break;
            }
            Thread.sleep(200);
        }
        double drain = (System.nanoTime() - t0) / 1e9;
        if (!notes.containsKey("settle")) {
            notes.put("backlog", String.format("every event delivered to the task engine %.1f s after the last request was "
                    + "answered", drain));
        }
        long fireBy = loadEndMillis + deadlineSeconds * 1000L + 5000;
        while (System.currentTimeMillis() < fireBy) {
            Thread.sleep(500);
        }
        // a trigger fired late is still firing: give the timer threads up to 2 minutes to catch up
        long t1 = System.nanoTime();
        while (unfired() > 0 && System.nanoTime() - t1 < TimeUnit.MINUTES.toNanos(2)) {
            Thread.sleep(500);
        }
    }

    private long unfired() throws SQLException {
        return count("SELECT count(*) FROM qc_timer WHERE fire_at < TIMESTAMPTZ 'epoch' + INTERVAL '1 millisecond' * "
                + (loadEndMillis + deadlineSeconds * 1000L));
    }

    private void measure() throws Exception {
        List<Double> committed = new ArrayList<>();
        List<Double> computed = new ArrayList<>();
        List<Double> warm = new ArrayList<>(); // sent in the warm-up: only in the by-minute line
        try (Connection c = pg.connect(DB)) {
            c.setAutoCommit(false);
            try (Statement s = c.createStatement()) {
                s.setFetchSize(10_000);
                try (ResultSet rs = s.executeQuery("SELECT d.event_id, EXTRACT(EPOCH FROM d.settled_at) * 1000000, "
                        + "EXTRACT(EPOCH FROM v.received_at) * 1000000 FROM hub_delivery d LEFT JOIN qc_visit_event v "
                        + "ON v.event_id = d.event_id WHERE d.flow = '" + FLOW + "' AND d.event_id LIKE 'L-%' AND d.status = 'DELIVERED'")) {
                    while (rs.next()) {
                        Long sent = sentMicros.get(rs.getString(1));
                        if (sent == null) {
                            continue;
                        }
                        byTime(sent, (rs.getDouble(2) - sent) / 1000.0);
                        if (sent / 1000 < measuredStartMillis) {
                            warm.add((rs.getDouble(2) - sent) / 1000.0);
                            continue;
                        }
                        committed.add((rs.getDouble(2) - sent) / 1000.0);
                        if (rs.getObject(3) != null) {
                            computed.add((rs.getDouble(3) - sent) / 1000.0);
                        }
                    }
                }
                List<Double> late = new ArrayList<>();
                try (ResultSet rs = s.executeQuery("SELECT EXTRACT(EPOCH FROM (fired_at - scheduled_at)) * 1000 FROM qc_timer_fire "
                        + "WHERE scheduled_at >= TIMESTAMPTZ '" + Instant.ofEpochMilli(measuredStartMillis) + "' AND scheduled_at <= "
                        + "TIMESTAMPTZ '" + Instant.ofEpochMilli(loadEndMillis + deadlineSeconds * 1000L) + "'")) {
                    while (rs.next()) {
                        late.add(rs.getDouble(1));
                    }
                }
                latenessMs = Bench.sorted(late);
                Map<String, Long> st = new java.util.TreeMap<>();
                try (ResultSet rs = s.executeQuery("SELECT status, count(*) FROM qc_task GROUP BY status")) {
                    while (rs.next()) {
                        st.put(rs.getString(1), rs.getLong(2));
                    }
                }
                tasksByStatus = st;
            }
            c.commit();
        }
        // an event the engine has not applied yet counts with its age now: a lower bound of its latency, so that a
        // backlog cut short by BENCH_QC_SETTLE_MINUTES does not leave the slowest events out of the percentiles
        long nowMicros = System.currentTimeMillis() * 1000;
        int measured = committed.size();
        int measuredComputed = computed.size();
        java.util.Set<String> delivered = new java.util.HashSet<>();
        try (Connection c = pg.connect(DB); Statement s = c.createStatement();
                ResultSet rs = s.executeQuery("SELECT event_id FROM hub_delivery WHERE flow = '" + FLOW + "' AND status <> 'PENDING'")) {
            while (rs.next()) {
                delivered.add(rs.getString(1));
            }
        }
        for (Map.Entry<String, Long> e : sentMicros.entrySet()) {
            if (!delivered.contains(e.getKey())) {
                double age = (nowMicros - e.getValue()) / 1000.0;
                byTime(e.getValue(), age);
                if (e.getValue() / 1000 < measuredStartMillis) {
                    warm.add(age);
                    continue;
                }
                committed.add(age);
                computed.add(age);
            }
        }
        undelivered = committed.size() - measured;
        committedMs = Bench.sorted(committed);
        computedMs = Bench.sorted(computed);
        unfiredTimers = unfired();
        deadLetters = count("SELECT count(*) FROM dead_letter");
        notes.put("events measured", String.format("%,d of %,d delivered to the task engine when measured (%,d with a "
                + "qc_visit_event row); %,d not yet, counted with their age", measured, offered, measuredComputed, undelivered));
    }

    private long count(String sql) throws SQLException {
        try (Connection c = pg.connect(DB); PreparedStatement ps = c.prepareStatement(sql); ResultSet rs = ps.executeQuery()) {
            rs.next();
            return rs.getLong(1);
        }
    }

    /** Total and busy jiffies of all CPUs (/proc/stat), or null. */
    private static long[] machineTicks() {
        try {
            String[] f = Files.readAllLines(Path.of("/proc/stat")).get(0).trim().split("\\s+");
            long total = 0;
            for (int i = 1; i < f.length; i++) {
                total += Long.parseLong(f[i]);
            }
            long idle = Long.parseLong(f[4]) + Long.parseLong(f[5]);
            return new long[] { total, total - idle };
        } catch (IOException | RuntimeException e) {
            return null;
        }
    }

    /** Files a latency under its minute of the load and, for trials, its slice (0 = sent in the warm-up). */
    private void byTime(long sentMicros, double ms) {
        long since = sentMicros / 1000 - measuredStartMillis;
        committedByMinute.computeIfAbsent(since < 0 ? 0 : (int) (since / 60_000) + 1, k -> new ArrayList<>()).add(ms);
        if (sliceSeconds > 0) {
            committedBySlice.computeIfAbsent(since < 0 ? 0 : (int) (since / (sliceSeconds * 1000L)) + 1,
                    k -> new ArrayList<>()).add(ms);
        }
    }

    /** "warm-up: p50 / p99, 1: p50 / p99, ..." for latencies filed by {@link #byTime}. */
    private static String percentilesBy(Map<Integer, List<Double>> byTime) {
        StringBuilder line = new StringBuilder();
        byTime.forEach((m, l) -> {
            List<Double> sorted = Bench.sorted(l);
            line.append(line.length() == 0 ? "" : ", ").append(String.format("%s: %s / %s", m == 0 ? "warm-up" : m,
                    ms(Bench.percentile(sorted, 0.5)), ms(Bench.percentile(sorted, 0.99))));
        });
        return line.toString();
    }

    // ---- report -----------------------------------------------------------------------------------------------------

    private String table() {
        StringBuilder t = new StringBuilder();
        t.append(String.format("| %-58s | %10s | %10s | %10s | %-7s |%n", "figure", "p50", "p99", "target", ""));
        t.append("|").append("-".repeat(60)).append("|").append("-".repeat(12)).append("|").append("-".repeat(12)).append("|")
                .append("-".repeat(12)).append("|").append("-".repeat(9)).append("|\n");
        double c99 = Bench.percentile(committedMs, 0.99);
        double l99 = Bench.percentile(latenessMs, 0.99);
        t.append(row("event -> task committed (request sent -> flow settled)", Bench.percentile(committedMs, 0.5), c99,
                "≤ 200 ms", committedMs.isEmpty() ? null : c99 <= TARGET_LATENCY_P99_MS));
        t.append(row("event -> task computed (request sent -> engine batch start)", Bench.percentile(computedMs, 0.5),
                Bench.percentile(computedMs, 0.99), "", null));
        t.append(row(String.format("timer firing lateness (%,d firings)", latenessMs.size()), Bench.percentile(latenessMs, 0.5),
                l99, "≤ 2000 ms", latenessMs.isEmpty() ? null : l99 <= TARGET_LATENESS_P99_MS));
        t.append('\n');
        t.append(String.format("  measured: the %d s after a %d s warm-up at the same rate (events sent in the warm-up are not in the "
                + "percentiles above)%n", seconds, warmupSeconds));
        t.append("  event -> task committed by minute of the measured load (p50 / p99): ")
                .append(percentilesBy(committedByMinute)).append('\n');
        if (sliceSeconds > 0) {
            t.append(String.format("  by %d s slice (p50 / p99): ", sliceSeconds)).append(percentilesBy(committedBySlice))
                    .append('\n');
        }
        t.append(String.format("  offered %,d events in %.1f s = %,.0f events/s (asked %,d/s); open tasks at the start %,d "
                + "(%,d timers)%n", offered, loadSeconds, offered / loadSeconds, rate, preloadedOpen, preloadedTriggers));
        t.append(String.format("  hub CPU %.1f s over the load = %.0f %% of one core, %.1f ms per event; machine busy %.0f %% "
                + "(all %d cores, everything on it)%n", hubCpuSeconds, 100 * hubCpuSeconds / loadSeconds,
                1000 * hubCpuSeconds / Math.max(1, offered), machineBusy, Runtime.getRuntime().availableProcessors()));
        t.append(String.format("  hub RSS peak %,d MB (VmHWM), at most %,d MB sampled during the load%n", peakRssKb / 1024,
                maxRssDuringLoadKb / 1024));
        t.append(String.format("  timers due by the end but not fired: %d; dead letters: %d; tasks now %s%n", unfiredTimers,
                deadLetters, tasksByStatus));
        if (undelivered > 0) {
            t.append(String.format("  %,d events not yet applied when measured: counted with their age then (a lower bound)%n",
                    undelivered));
        }
        return t.toString();
    }

    private static String row(String what, double p50, double p99, String target, Boolean met) {
        return String.format("| %-58s | %10s | %10s | %10s | %-7s |%n", what, ms(p50), ms(p99), target,
                met == null ? "" : met ? "MET" : "MISSED");
    }

    private static String ms(double v) {
        return Double.isNaN(v) ? "-" : String.format("%.0f ms", v);
    }

    private void writeResults(String table) throws IOException {
        StringBuilder md = new StringBuilder();
        md.append("## qc benchmark (issue #3, section 8)\n\n");
        md.append("Written by `bench/run-qc.sh` (see [README.md](README.md#qc-benchmark-issue-3-section-8) for what each figure means); each run ")
                .append("replaces this section only.\n\n");
        md.append("Command:\n\n    ").append(command).append("\n\n");
        md.append("| | |\n|---|---|\n");
        md.append("| date | ").append(ZonedDateTime.now().format(DateTimeFormatter.RFC_1123_DATE_TIME)).append(" |\n");
        md.append("| machine | ").append(Runtime.getRuntime().availableProcessors()).append(" cores (").append(Bench.cpuModel())
                .append("), ").append(Bench.memTotal()).append(" RAM |\n");
        md.append("| load average (1, 5, 15 min) | at start ").append(loadAvgStart).append("; at end ").append(loadAvgEnd)
                .append(" |\n");
        md.append("| java | ").append(System.getProperty("java.vm.name")).append(' ')
                .append(System.getProperty("java.runtime.version")).append(" |\n");
        try {
            md.append("| database | ").append(pg.version()).append(" |\n");
        } catch (Exception e) {
            md.append("| database | unknown |\n");
        }
        md.append("| hub | `java ").append(hubJavaOpts).append(" -jar target/quarkus-app/quarkus-run.jar`, profile postgres, ")
                .append("HTTP ingest -> outbox-source (completionSize ").append(batchSize).append(", completionTimeout ")
                .append(batchTimeoutMs).append(" ms, pollPeriod ").append(pollMs).append(" ms, batchPerPoll ").append(batchPerPoll)
                .append(") -> qc-sink; timers in qc_timer, ")
                .append("fired by the clustered Quartz sweep every 1 s (the shipped settings) |\n");
        md.append(String.format("| preload | %,d admissions over the last 6 h -> %,d open tasks, %,d timers pending, "
                + "in %.0f s |%n", preloadVisits, preloadedOpen, preloadedTriggers, preloadSeconds));
        md.append(String.format("| warm-up | %d s at the same rate before the measured load (not in the percentiles) |%n", warmupSeconds));
        md.append(String.format("| load | %,d events/s for %d s over HTTP, one event per request, at most %d requests open (one keep-alive connection each, bench PlainHttp); "
                + "admissions 20 %%, documents completed 35 %%, condition changes 15 %%, emergency consultations 10 %% "
                + "(due %d s later, reminder halfway), routine consultations 5 %%, transfers in 5 %%, discharges 10 %% |%n",
                rate, seconds, inFlight, deadlineSeconds));
        md.append("\n```\n").append(table).append("```\n\n");
        notes.forEach((k, v) -> md.append("- ").append(k).append(": ").append(v).append('\n'));
        md.append("- bench JVM CPU over the whole run: ").append(String.format("%.1f s",
                ManagementFactory.getPlatformMXBean(com.sun.management.OperatingSystemMXBean.class).getProcessCpuTime() / 1e9))
                .append(" (it shares the machine with the hub and PostgreSQL)\n");
        md.append("\nFigures from a machine running other work (see the load average) are only indicative.\n");
        ResultsFile.writeQcSection(results, md.toString());
    }

    static {
        Locale.setDefault(Locale.ROOT);
    }
}
