package org.hospitalhub.bench;

import org.hospitalhub.bench.shared.ChildHub;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.time.Duration;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;

import org.apache.kafka.common.TopicPartition;

/**
 * The benchmark of issue item 10 (see bench/README.md): the same Kafka data through (1) the hub's kafka-source ->
 * dedupe -> batch -> jdbc-sink flow, (2) a raw Kafka consumer + JDBC baseline with the same guarantees, (3) the
 * synchronous per-message HTTP design the hub replaces; prints a table and writes bench/RESULTS.md.
 * Arguments: N --root &lt;hub checkout&gt; --work &lt;work folder&gt; --results &lt;RESULTS.md&gt; --command &lt;as typed&gt;.
 */
public final class Bench {

    // targets of issue item 10
    static final double TARGET_RATE = 50_000;
    static final double TARGET_X_RAW = 0.8;
    static final double TARGET_X_SYNC = 50;
    static final double TARGET_RSS_MB = 400;

    static final String HUB_STEADY_TOPIC = "bench.steady.hub";
    static final String RAW_STEADY_TOPIC = "bench.steady.raw";

    private final long n;
    private final Path root;
    private final Path work;
    private final Path results;
    private final String command;
    private final int partitions = env("BENCH_PARTITIONS", 4);
    private final int patients = env("BENCH_PATIENTS", 10_000);
    private final int batch = env("BENCH_BATCH", 2000);
    private final int batchTimeoutMs = env("BENCH_BATCH_TIMEOUT_MS", 200);
    private final int consumers = env("BENCH_CONSUMERS", 1);
    /** kafka-source's dedupe: repository (hub_processed, the template's default) or sink (the staging table's key). */
    private final String dedupe = envText("BENCH_DEDUPE", "repository");
    /** kafka-source's overlap (true, the template's default: a batch is delivered while the next is read; or false). */
    private final String overlap = envText("BENCH_OVERLAP", "true");
    private final int rate = env("BENCH_RATE", 20_000);
    private final int steadySeconds = env("BENCH_STEADY_SECONDS", 20);
    private final int syncSample = env("BENCH_SYNC_SAMPLE", 20_000);
    private final int syncSeconds = env("BENCH_SYNC_SECONDS", 30);
    private final String hubJavaOpts = envText("BENCH_HUB_JAVA_OPTS", "-Xmx160m -Xmn96m -XX:SurvivorRatio=3 -XX:+UseSerialGC");
    /**
     * Where the raw baseline runs: "child", a JVM of its own started cold with the hub's options (the default since
     * session 17), or "bench", this JVM (warmed by the earlier phases, 1 GB heap), as before.
     */
    private final String rawJvm = envText("BENCH_RAW_JVM", "child");
    private final String rawJavaOpts = envText("BENCH_RAW_JAVA_OPTS", hubJavaOpts);
    /** The broker's bootstrap servers, once it runs. */
    private String brokers;
    private final String brokerJavaOpts = envText("BENCH_BROKER_JAVA_OPTS", "-Xms256m -Xmx512m");
    private final String only = envText("BENCH_ONLY", "hub,raw,sync");
    private final Pg pg = new Pg(envText("BENCH_PG_URL", "jdbc:postgresql://127.0.0.1:5432/"),
            envText("BENCH_PG_USER", "postgres"), envText("BENCH_PG_PASSWORD", ""));
    private final ChargeEvents events = new ChargeEvents(patients);

    // figures
    private final Map<String, String> notes = new LinkedHashMap<>();
    private final Map<String, String> failures = new LinkedHashMap<>();
    private BenchTopics.Loaded loaded;
    private Throughput hub;
    private Throughput raw;
    private SyncBaseline.Result sync;
    private Delays hubDelay;
    private Delays rawDelay;
    private long hubPeakRssKb = -1;
    private String loadStart;
    private String loadEnd;

    record Throughput(long records, long rows, double seconds, double secondsFromLaunch, double cpuSeconds,
            double middleRate) {
        double rate() {
            return records / seconds;
        }
    }

    /** Steady-phase delays (sorted, ms) and how long after the producer's last record the consumer had caught up. */
    record Delays(BenchTopics.Steady steady, List<Double> ms, double drainSeconds) {
        double p(double q) {
            return percentile(ms, q);
        }
    }

    private Bench(long n, Path root, Path work, Path results, String command) {
        this.n = n;
        this.root = root;
        this.work = work;
        this.results = results;
        this.command = command;
    }

    public static void main(String[] args) throws Exception {
        long n = 1_000_000;
        Path root = Path.of("..");
        Path work = Path.of("work");
        Path results = Path.of("RESULTS.md");
        String command = "bench/run.sh";
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--root" -> root = Path.of(args[++i]);
                case "--work" -> work = Path.of(args[++i]);
                case "--results" -> results = Path.of(args[++i]);
                case "--command" -> command = args[++i];
                default -> n = Long.parseLong(args[i].replace("_", "").replace(",", ""));
            }
        }
        if (n < 1000) {
            throw new IllegalArgumentException("N must be at least 1000");
        }
        new Bench(n, root.toAbsolutePath().normalize(), work.toAbsolutePath().normalize(), results, command).run();
    }

    private void run() throws Exception {
        Files.createDirectories(work);
        loadStart = loadAverage();
        System.out.printf("Benchmark: N = %,d charge events, %d partitions, batch %d / %d ms, %d consumer(s)%n", n,
                partitions, batch, batchTimeoutMs, consumers);
        try (KafkaBrokerProcess broker = KafkaBrokerProcess.start(work, brokerJavaOpts)) {
            Runtime.getRuntime().addShutdownHook(new Thread(broker::close));
            System.out.println("Kafka broker up at " + broker.bootstrapServers() + " (pid " + broker.pid() + ")");
            brokers = broker.bootstrapServers();
            try (BenchTopics topics = new BenchTopics(broker.bootstrapServers())) {
                topics.create(partitions, List.of(HUB_STEADY_TOPIC, RAW_STEADY_TOPIC));
                System.out.printf("Preloading %,d records into %s ...%n", n, BenchTopics.LOAD);
                loaded = topics.preload(events, n);
                System.out.printf("  %,d records (%,d unique eventIds, %,d re-sends), mean %.0f bytes, in %.1f s%n",
                        loaded.records(), loaded.unique(), loaded.resends(), loaded.meanBytes(), loaded.seconds());
                Map<TopicPartition, Long> end = topics.endOffsets(BenchTopics.LOAD);
                if (only.contains("hub")) {
                    phase("hub", () -> runHub(topics, broker.bootstrapServers(), end));
                }
                if (only.contains("raw")) {
                    phase("raw", () -> runRaw(topics, end));
                }
                if (only.contains("sync")) {
                    phase("sync", () -> runSync(topics));
                }
            }
        }
        loadEnd = loadAverage();
        String table = table();
        System.out.println();
        System.out.println(table);
        writeResults(table);
        System.out.println("Written: " + results);
        if (!failures.isEmpty()) {
            System.out.println("FAILED: " + failures);
            System.exit(1);
        }
    }

    interface Phase {
        void run() throws Exception;
    }

    /** Runs one system's measurement; a failure is reported (table, RESULTS.md, exit code), the others still run. */
    private void phase(String name, Phase p) {
        try {
            long ready = pg.checkpoint();
            long wal = pg.walBytes();
            p.run();
            notes.put(name + ": WAL segments ready for reuse at its start (after a checkpoint) / WAL written in its phase",
                    ready + " / " + (pg.walBytes() - wal) / (1024 * 1024) + " MB");
        } catch (Exception e) {
            System.err.println("[" + name + "] FAILED: " + e);
            e.printStackTrace();
            failures.put(name, e.getClass().getSimpleName() + ": " + e.getMessage());
        }
    }

    // ---- 1. the hub ------------------------------------------------------------------------------------------------

    private void runHub(BenchTopics topics, String brokers, Map<TopicPartition, Long> end) throws Exception {
        System.out.println("[hub] preparing database bench_hub and the flow file");
        pg.recreate("bench_hub");
        Path routes = work.resolve("routes");
        Files.createDirectories(routes);
        Files.writeString(routes.resolve("bench-flows.camel.yaml"), flows());
        Map<String, String> env = new TreeMap<>();
        env.put("QUARKUS_PROFILE", "postgres");
        env.put("HUB_DB_URL", pg.url("bench_hub"));
        env.put("HUB_DB_USERNAME", pg.user);
        env.put("HUB_DB_PASSWORD", pg.password);
        env.put("HUB_KAFKA_BROKERS", brokers);
        env.put("HUB_ROUTES_DIR", routes.toString());
        env.put("HUB_DATA_DIR", work.resolve("hub-data").toString());
        env.put("HUB_AUTH_CLIENTS", "bench:source:bench-unused-key");
        long launch = System.nanoTime();
        try (ChildHub p = ChildHub.start("hub", root, work, work, hubJavaOpts, ChildHub.freePort(), env)) {
            Runtime.getRuntime().addShutdownHook(new Thread(p::close));
            long started = p.awaitStarted(Duration.ofMinutes(3));
            double cpu0 = p.cpuSeconds();
            System.out.printf("[hub] started in %.1f s (pid %d, %s); consuming %,d records ...%n",
                    (started - launch) / 1e9, p.pid(), hubJavaOpts, n);
            BenchTopics.Progress done = topics.awaitCommitted("bench-hub", end, timeout(), p::alive);
            double cpu = p.cpuSeconds() - cpu0;
            long rows = pg.count("bench_hub", "finance_staging");
            hub = new Throughput(n, rows, (done.done() - started) / 1e9, (done.done() - launch) / 1e9, cpu,
                    done.middleRate());
            long hwmLoad = p.kb("VmHWM");
            System.out.printf("[hub] %,d records -> %,d rows in %.2f s: %,.0f events/s (peak RSS so far %d MB, CPU %.1f s)%n",
                    n, rows, hub.seconds(), hub.rate(), hwmLoad / 1024, cpu);
            check(rows == loaded.unique(), "hub: " + rows + " rows in finance_staging, expected " + loaded.unique());
            notes.put("hub peak RSS after the load phase", hwmLoad / 1024 + " MB");
            notes.put("hub log", p.log().toString());
            try {
                hubDelay = steady(topics, HUB_STEADY_TOPIC, "bench-hub-steady", "bench_hub", "materials_staging", p::alive);
            } finally {
                hubPeakRssKb = p.kb("VmHWM");
            }
        }
    }

    /** The hospital flow file the hub runs: the shipped templates, tuned only by their parameters. */
    private String flows() {
        return "# Generated by the benchmark (bench/README.md): Kafka -> dedupe -> batch -> PostgreSQL staging table.\n"
                + flow("bench-load", BenchTopics.LOAD, "bench-hub", "finance_staging")
                + flow("bench-steady", HUB_STEADY_TOPIC, "bench-hub-steady", "materials_staging");
    }

    private String flow(String id, String topic, String group, String table) {
        return "- templatedRoute:\n    routeTemplateRef: kafka-source\n    routeId: " + id + "-source\n    parameters:\n"
                + "      - {name: flowId, value: " + id + "}\n      - {name: topic, value: " + topic + "}\n"
                + "      - {name: groupId, value: " + group + "}\n"
                + "      - {name: completionSize, value: \"" + batch + "\"}\n"
                + "      - {name: completionTimeout, value: \"" + batchTimeoutMs + "\"}\n"
                + "      - {name: consumersCount, value: \"" + consumers + "\"}\n"
                + "      - {name: dedupe, value: " + dedupe + "}\n"
                + "      - {name: overlap, value: \"" + overlap + "\"}\n"
                + "- templatedRoute:\n    routeTemplateRef: jdbc-sink\n    routeId: " + id + "-sink\n    parameters:\n"
                + "      - {name: flowId, value: " + id + "}\n      - {name: table, value: " + table + "}\n";
    }

    // ---- 2. the raw baseline ---------------------------------------------------------------------------------------

    private void runRaw(BenchTopics topics, Map<TopicPartition, Long> end) throws Exception {
        System.out.println("[raw] preparing database bench_raw");
        pg.recreate("bench_raw");
        try (Connection c = pg.connect("bench_raw")) {
            Pg.createStaging(c, "raw_load");
            Pg.createStaging(c, "raw_steady");
        }
        BenchTopics.Progress done;
        long start;
        double cpu;
        if (rawJvm.equals("bench")) {
            var os = (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();
            double cpu0 = os.getProcessCpuTime() / 1e9;
            start = System.nanoTime();
            try (RawBaseline r = new RawBaseline(topics, pg, "bench_raw", "bench-raw", BenchTopics.LOAD, "raw_load",
                    consumers, batch, batchTimeoutMs)) {
                System.out.printf("[raw] consuming %,d records in the bench's JVM ...%n", n);
                r.start();
                done = topics.awaitCommitted("bench-raw", end, timeout(), r::alive);
            }
            cpu = os.getProcessCpuTime() / 1e9 - cpu0;
        } else {
            try (RawChild r = new RawChild("bench-raw", BenchTopics.LOAD, "raw_load")) {
                start = System.nanoTime(); // its consumers created and started, as the hub's clock starts once started
                double cpu0 = r.cpuSeconds();
                System.out.printf("[raw] consuming %,d records in a JVM of its own (pid %d, %s) ...%n", n, r.process.pid(),
                        rawJavaOpts);
                done = topics.awaitCommitted("bench-raw", end, timeout(), r::alive);
                cpu = r.cpuSeconds() - cpu0;
            }
        }
        long rows = pg.count("bench_raw", "raw_load");
        raw = new Throughput(n, rows, (done.done() - start) / 1e9, (done.done() - start) / 1e9, cpu, done.middleRate());
        System.out.printf("[raw] %,d records -> %,d rows in %.2f s: %,.0f events/s (CPU of its JVM %.1f s)%n",
                n, rows, raw.seconds(), raw.rate(), cpu);
        check(rows == loaded.unique(), "raw: " + rows + " rows in raw_load, expected " + loaded.unique());
        if (rawJvm.equals("bench")) {
            try (RawBaseline r = new RawBaseline(topics, pg, "bench_raw", "bench-raw-steady", RAW_STEADY_TOPIC, "raw_steady",
                    consumers, batch, batchTimeoutMs)) {
                r.start();
                rawDelay = steady(topics, RAW_STEADY_TOPIC, "bench-raw-steady", "bench_raw", "raw_steady", r::alive);
            }
        } else {
            try (RawChild r = new RawChild("bench-raw-steady", RAW_STEADY_TOPIC, "raw_steady")) {
                rawDelay = steady(topics, RAW_STEADY_TOPIC, "bench-raw-steady", "bench_raw", "raw_steady", r::alive);
            }
        }
    }

    /**
     * The raw baseline in a JVM of its own ({@link RawMain}), started with {@link #rawJavaOpts}; the constructor
     * returns once its consumers are running. Closing it stops it (SIGTERM, as the hub is stopped).
     */
    private final class RawChild implements AutoCloseable {
        final Process process;

        RawChild(String group, String topic, String table) throws Exception {
            Path started = work.resolve(group + ".started");
            Files.deleteIfExists(started);
            List<String> cmd = new ArrayList<>();
            cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
            cmd.addAll(List.of(rawJavaOpts.trim().split("\\s+")));
            cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), RawMain.class.getName(), brokers, "bench_raw",
                    group, topic, table, Integer.toString(consumers), Integer.toString(batch), Integer.toString(batchTimeoutMs),
                    started.toString()));
            process = new ProcessBuilder(cmd).redirectErrorStream(true)
                    .redirectOutput(ProcessBuilder.Redirect.appendTo(work.resolve("raw.log").toFile())).start();
            Runtime.getRuntime().addShutdownHook(new Thread(process::destroyForcibly));
            long deadline = System.nanoTime() + Duration.ofMinutes(2).toNanos();
            while (!Files.exists(started)) {
                if (!process.isAlive() || System.nanoTime() > deadline) {
                    process.destroyForcibly();
                    throw new IllegalStateException("the raw baseline's JVM did not start; see " + work.resolve("raw.log"));
                }
                Thread.sleep(20);
            }
        }

        boolean alive() {
            return process.isAlive();
        }

        double cpuSeconds() {
            return ChildHub.cpuSeconds(process.pid());
        }

        @Override
        public void close() throws InterruptedException {
            process.destroy();
            if (!process.waitFor(30, java.util.concurrent.TimeUnit.SECONDS)) {
                process.destroyForcibly().waitFor();
            }
        }
    }

    // ---- 3. the synchronous baseline -------------------------------------------------------------------------------

    private void runSync(BenchTopics topics) throws Exception {
        System.out.println("[sync] preparing database bench_sync");
        pg.recreate("bench_sync");
        try (Connection c = pg.connect("bench_sync")) {
            Pg.createStaging(c, "sync_staging");
        }
        List<String> sample = topics.sample((int) Math.min(n, syncSample));
        System.out.printf("[sync] POSTing up to %,d events one at a time (at most %d s) ...%n", sample.size(), syncSeconds);
        sync = SyncBaseline.run(pg, "bench_sync", "sync_staging", sample, syncSeconds);
        System.out.printf("[sync] %,d events in %.2f s: %,.0f events/s%n", sync.events(), sync.seconds(), sync.rate());
    }

    // ---- the steady-rate phase (delay) -----------------------------------------------------------------------------

    private Delays steady(BenchTopics topics, String topic, String group, String db, String table,
            java.util.function.BooleanSupplier alive) throws Exception {
        topics.awaitGroupStable(group, Duration.ofSeconds(60));
        System.out.printf("[%s] steady phase: %,d events/s for %d s into %s ...%n", db.substring(6), rate, steadySeconds, topic);
        BenchTopics.Steady st = topics.produceSteadily(events, topic, rate, steadySeconds);
        long produced = System.nanoTime();
        BenchTopics.Progress caughtUp = topics.awaitCommitted(group, topics.endOffsets(topic), Duration.ofMinutes(5), alive);
        Map<String, Long> appended = topics.appendTimes(topic);
        List<Double> ms = pg.delays(db, table, appended);
        check(ms.size() == st.records(), db + ": " + ms.size() + " steady-phase rows, expected " + st.records());
        Collections.sort(ms);
        Delays d = new Delays(st, ms, (caughtUp.done() - produced) / 1e9);
        System.out.printf("[%s] sent %,d at %,.0f/s; delay p50 %.0f ms, p99 %.0f ms, max %.0f ms%n", db.substring(6),
                st.records(), st.rate(), d.p(0.50), d.p(0.99), ms.get(ms.size() - 1));
        return d;
    }

    // ---- report ----------------------------------------------------------------------------------------------------

    private String table() {
        StringBuilder t = new StringBuilder();
        t.append(String.format("| %-50s | %10s | %7s | %8s | %9s | %9s | %8s |%n", "system", "events/s", "× raw",
                "× sync", "p50 delay", "p99 delay", "peak RSS"));
        t.append("|").append("-".repeat(52)).append("|").append("-".repeat(12)).append("|").append("-".repeat(9))
                .append("|").append("-".repeat(10)).append("|").append("-".repeat(11)).append("|").append("-".repeat(11))
                .append("|").append("-".repeat(10)).append("|\n");
        Double rawRate = raw == null ? null : raw.rate();
        Double syncRate = sync == null ? null : sync.rate();
        if (hub != null) {
            t.append(row("hub: kafka-source -> dedupe -> batch -> jdbc-sink", hub.rate(), rawRate, syncRate,
                    hubDelay == null ? null : hubDelay.p(0.5), hubDelay == null ? null : hubDelay.p(0.99),
                    hubPeakRssKb < 0 ? "-" : hubPeakRssKb / 1024 + " MB"));
        }
        if (raw != null) {
            t.append(row("raw: KafkaConsumer + JDBC unnest + commitAsync", raw.rate(), rawRate, syncRate,
                    rawDelay == null ? null : rawDelay.p(0.5), rawDelay == null ? null : rawDelay.p(0.99), "-"));
        }
        if (sync != null) {
            t.append(row("sync: one HTTP POST per event, 1 row/commit", sync.rate(), rawRate, syncRate,
                    percentile(sorted(sync.latenciesMs()), 0.5), percentile(sorted(sync.latenciesMs()), 0.99), "-"));
        }
        failures.forEach((k, v) -> t.append(String.format("| %-50s | FAILED: %s%n", k, v)));
        t.append("\nTargets (hub):\n");
        if (hub != null) {
            t.append(target(String.format("≥ %,.0f events/s end to end", TARGET_RATE), String.format("%,.0f", hub.rate()),
                    hub.rate() >= TARGET_RATE));
            t.append(rawRate == null ? target("≥ 0.8 × raw baseline", "not measured", null)
                    : target("≥ 0.8 × raw baseline", String.format("%.2f ×", hub.rate() / rawRate),
                            hub.rate() / rawRate >= TARGET_X_RAW));
            t.append(syncRate == null ? target("≥ 50 × synchronous baseline", "not measured", null)
                    : target("≥ 50 × synchronous baseline", String.format("%.1f ×", hub.rate() / syncRate),
                            hub.rate() / syncRate >= TARGET_X_SYNC));
            t.append(target("peak RSS ≤ 400 MB", hubPeakRssKb / 1024 + " MB", hubPeakRssKb >= 0
                    && hubPeakRssKb / 1024.0 <= TARGET_RSS_MB));
        } else {
            t.append(failures.containsKey("hub") ? "  hub FAILED: every target MISSED\n" : "  hub not measured (BENCH_ONLY)\n");
        }
        return t.toString();
    }

    private static String row(String name, double rate, Double raw, Double sync, Double p50, Double p99, String rss) {
        return String.format("| %-50s | %10s | %7s | %8s | %9s | %9s | %8s |%n", name, String.format("%,.0f", rate),
                raw == null ? "-" : String.format("%.2f", rate / raw), sync == null ? "-" : String.format("%.1f", rate / sync),
                p50 == null ? "-" : String.format("%.0f ms", p50), p99 == null ? "-" : String.format("%.0f ms", p99), rss);
    }

    private static String target(String what, String value, Boolean met) {
        return String.format("  %-32s %14s   %s%n", what, value, met == null ? "NOT MEASURED" : met ? "MET" : "MISSED");
    }

    private void writeResults(String table) throws IOException {
        StringBuilder md = new StringBuilder();
        md.append("# Benchmark results\n\n");
        md.append("Written by `bench/run.sh` (see [README.md](README.md) for what each figure means). ");
        md.append("Every run rewrites this file except the qc section (written by `bench/run-qc.sh`), which it keeps.\n\n");
        md.append("Command:\n\n    ").append(command).append("\n\n");
        md.append("| | |\n|---|---|\n");
        md.append("| date | ").append(ZonedDateTime.now().format(DateTimeFormatter.RFC_1123_DATE_TIME)).append(" |\n");
        md.append("| machine | ").append(Runtime.getRuntime().availableProcessors()).append(" cores (")
                .append(cpuModel()).append("), ").append(memTotal()).append(" RAM, ")
                .append(System.getProperty("os.name")).append(' ').append(System.getProperty("os.version")).append(" |\n");
        md.append("| load average (1, 5, 15 min) | at start ").append(loadStart).append("; at end ").append(loadEnd)
                .append(" |\n");
        md.append("| java | ").append(System.getProperty("java.vm.name")).append(' ')
                .append(System.getProperty("java.runtime.version")).append(" |\n");
        try {
            md.append("| database | ").append(pg.version()).append(" |\n");
        } catch (Exception e) {
            md.append("| database | unknown (").append(e.getMessage()).append(") |\n");
        }
        md.append("| Kafka | 4.1.1, one KRaft node in a child JVM (").append(brokerJavaOpts).append("), ")
                .append(partitions).append(" partitions |\n");
        md.append("| hub | `java ").append(hubJavaOpts).append(" -jar target/quarkus-app/quarkus-run.jar`, profile postgres, ")
                .append("kafka-source completionSize ").append(batch).append(", completionTimeout ").append(batchTimeoutMs)
                .append(" ms, consumersCount ").append(consumers).append(", dedupe ").append(dedupe).append(", overlap ").append(overlap).append(" |\n");
        md.append("| raw | ").append(rawJvm.equals("bench") ? "in the bench's own JVM (`" + System.getProperty("java.vm.name")
                + "`, warmed by the earlier phases)" : "`java " + rawJavaOpts + "`, a JVM of its own started cold like the hub")
                .append(", ").append(consumers).append(" consumer(s), max.poll.records ").append(batch).append(" |\n");
        md.append("| data | ").append(String.format("%,d", n)).append(" his.charge.created events, ");
        if (loaded != null) {
            md.append(String.format("%,d unique eventIds + %,d re-sends (%.1f %%), mean %.0f bytes, ", loaded.unique(),
                    loaded.resends(), 100.0 * loaded.resends() / loaded.records(), loaded.meanBytes()));
        }
        md.append(String.format("%,d patients (record keys) |%n", patients));
        md.append(String.format("| delay phase | %,d events/s for %d s per system |%n", rate, steadySeconds));
        md.append(String.format("| sync sample | first %,d records of the topic, at most %d s |%n", syncSample, syncSeconds));
        md.append("\n## Figures\n\n").append(table.replace("\nTargets (hub):\n", "\nTargets (hub):\n\n```\n")).append("```\n");
        md.append("\n## Details\n\n");
        if (loaded != null) {
            md.append(String.format("- Preload: %,d records in %.1f s (%,.0f records/s).%n", loaded.records(),
                    loaded.seconds(), loaded.records() / loaded.seconds()));
        }
        if (hub != null) {
            md.append(String.format("- Hub: %,d records -> %,d rows in %.2f s from `/q/health/started` to the last "
                    + "committed offset (%.2f s from process launch, i.e. %,.0f events/s with JVM start-up). "
                    + "Between 10 %% and 90 %% of the records committed: %,.0f events/s. "
                    + "Hub process CPU %.1f s = %.0f ms per 1,000 events.%n", hub.records(), hub.rows(), hub.seconds(),
                    hub.secondsFromLaunch(), hub.records() / hub.secondsFromLaunch(), hub.middleRate(), hub.cpuSeconds(),
                    1e6 * hub.cpuSeconds() / hub.records()));
        }
        if (raw != null) {
            md.append(String.format("- Raw: %,d records -> %,d rows in %.2f s from creating the consumer to the last "
                    + "committed offset. Between 10 %% and 90 %%: %,.0f events/s. CPU of its JVM %.1f s = %.0f ms per "
                    + "1,000 events.%n", raw.records(), raw.rows(), raw.seconds(), raw.middleRate(), raw.cpuSeconds(),
                    1e6 * raw.cpuSeconds() / raw.records()));
        }
        delayDetail(md, "Hub", hubDelay);
        delayDetail(md, "Raw", rawDelay);
        if (sync != null) {
            List<Double> l = sorted(sync.latenciesMs());
            md.append(String.format("- Sync: %,d events in %.2f s; round trip p50 %.1f ms, p99 %.1f ms.%n",
                    sync.events(), sync.seconds(), percentile(l, 0.5), percentile(l, 0.99)));
        }
        notes.forEach((k, v) -> md.append("- ").append(k).append(": ").append(v).append('\n'));
        md.append("\nThe load average above says how busy the machine was: figures from a machine running other work "
                + "are noisy and only indicative.\n");
        Files.writeString(results, ResultsFile.keepingQcSection(results, md.toString()));
    }

    private void delayDetail(StringBuilder md, String who, Delays x) {
        if (x == null) {
            return;
        }
        md.append(String.format("- %s delay phase: %,d events sent at %,.0f/s (asked %,d/s); delay p50 %.0f ms, "
                + "p90 %.0f ms, p99 %.0f ms, max %.0f ms; all committed %.1f s after the last record was sent.", who,
                x.steady().records(), x.steady().rate(), rate, x.p(0.5), x.p(0.9), x.p(0.99),
                x.ms().get(x.ms().size() - 1), x.drainSeconds()));
        if (x.drainSeconds() > 2) {
            md.append(" It could not keep up with the offered rate and built a backlog, so these delays mostly "
                    + "measure the backlog, not the batching.");
        }
        md.append('\n');
    }

    // ---- helpers ---------------------------------------------------------------------------------------------------

    private Duration timeout() {
        return Duration.ofSeconds(Math.max(180, n / 1000));
    }

    private static void check(boolean ok, String what) {
        if (!ok) {
            throw new IllegalStateException("wrong result: " + what);
        }
    }

    static List<Double> sorted(List<Double> l) {
        List<Double> s = new ArrayList<>(l);
        Collections.sort(s);
        return s;
    }

    /** Nearest-rank percentile of a sorted list. */
    static double percentile(List<Double> sorted, double q) {
        if (sorted.isEmpty()) {
            return Double.NaN;
        }
        int i = (int) Math.ceil(q * sorted.size()) - 1;
        return sorted.get(Math.max(0, Math.min(sorted.size() - 1, i)));
    }

    static String loadAverage() {
        try {
            String[] f = Files.readString(Path.of("/proc/loadavg")).split(" ");
            return f[0] + ", " + f[1] + ", " + f[2];
        } catch (IOException e) {
            return "unknown";
        }
    }

    static String cpuModel() {
        try {
            return Files.readAllLines(Path.of("/proc/cpuinfo")).stream().filter(l -> l.startsWith("model name"))
                    .map(l -> l.substring(l.indexOf(':') + 1).trim()).findFirst().orElse("unknown CPU");
        } catch (IOException e) {
            return "unknown CPU";
        }
    }

    static String memTotal() {
        try {
            return Files.readAllLines(Path.of("/proc/meminfo")).stream().filter(l -> l.startsWith("MemTotal"))
                    .map(l -> Long.parseLong(l.replaceAll("\\D", "")) / 1024 / 1024 + " GB").findFirst().orElse("?");
        } catch (IOException e) {
            return "?";
        }
    }

    static int env(String name, int def) {
        String v = System.getenv(name);
        return v == null || v.isBlank() ? def : Integer.parseInt(v.trim().replace("_", ""));
    }

    static String envText(String name, String def) {
        String v = System.getenv(name);
        return v == null ? def : v;
    }

    static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    static {
        Locale.setDefault(Locale.ROOT);
    }
}
