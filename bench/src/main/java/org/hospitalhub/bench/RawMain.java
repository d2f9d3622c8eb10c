package org.hospitalhub.bench;

import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The raw baseline in a JVM of its own, started cold like the hub (see {@link Bench#runRaw}): runs one
 * {@link RawBaseline} until it is stopped (SIGTERM) or fails.
 * <p>
 * Arguments: brokers, database, consumer group, topic, table, consumers, batch size, poll ms, and the file to create
 * once the consumers are running (the bench starts its clock then, as it does at the hub's {@code /q/health/started}).
 * PostgreSQL from BENCH_PG_URL, BENCH_PG_USER, BENCH_PG_PASSWORD, as for the bench itself.
 */
public final class RawMain {

    private RawMain() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 9) {
            throw new IllegalArgumentException("usage: RawMain BROKERS DB GROUP TOPIC TABLE CONSUMERS BATCH POLL_MS STARTED_FILE");
        }
        Pg pg = new Pg(Bench.envText("BENCH_PG_URL", "jdbc:postgresql://127.0.0.1:5432/"),
                Bench.envText("BENCH_PG_USER", "postgres"), Bench.envText("BENCH_PG_PASSWORD", ""));
        BenchTopics topics = new BenchTopics(args[0]);
        RawBaseline raw = new RawBaseline(topics, pg, args[1], args[2], args[3], args[4], Integer.parseInt(args[5]),
                Integer.parseInt(args[6]), Integer.parseInt(args[7]));
        Thread stop = new Thread(() -> {
            try {
                raw.close();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        });
        Runtime.getRuntime().addShutdownHook(stop);
        raw.start();
        Files.writeString(Path.of(args[8]), "started\n");
        while (raw.alive()) {
            Thread.sleep(100);
        }
        if (raw.failure() != null) { // else it is being stopped
            System.err.println("raw baseline failed: " + raw.failure());
            Runtime.getRuntime().halt(1);
        }
    }
}
