package org.hospitalhub.bench.shared;

import java.io.IOException;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * The hub as it is shipped, as a child process of a benchmark (all of bench/):
 * {@code java <opts> -jar target/quarkus-app/quarkus-run.jar} in its own folder {@code dir}, configured by environment
 * (the caller's HUB_/QUARKUS_/CAMEL_ variables removed), output to {@code <dir>/hub.log}, pid in
 * {@code <work>/<name>.pid} (for the scripts' clean-up, which checks that the command line names {@code work}).
 * Memory figures come from /proc/&lt;pid&gt;/status (VmHWM = peak resident set), CPU time from /proc/&lt;pid&gt;/stat.
 */
public final class ChildHub implements AutoCloseable {

    private static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(1)).build();

    public final String name;
    public final int port;
    private final Path log;
    private final Process process;

    private ChildHub(String name, int port, Path log, Process process) {
        this.name = name;
        this.port = port;
        this.log = log;
        this.process = process;
    }

    /** Starts the hub on HTTP port {@code port}; {@code work} marks the process as the benchmark's (its command line). */
    public static ChildHub start(String name, Path root, Path work, Path dir, String javaOpts, int port, Map<String, String> env)
            throws IOException {
        Path jar = root.resolve("target/quarkus-app/quarkus-run.jar");
        if (!Files.exists(jar)) {
            throw new IOException("no hub jar at " + jar + " (./mvnw -q package -DskipTests)");
        }
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        if (!javaOpts.isBlank()) {
            cmd.addAll(List.of(javaOpts.trim().split("\\s+")));
        }
        cmd.add("-Dhub.bench.work=" + work);
        cmd.add("-jar");
        cmd.add(jar.toString());
        Files.createDirectories(dir);
        Path log = dir.resolve("hub.log");
        ProcessBuilder pb = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.to(log.toFile()));
        pb.environment().keySet().removeIf(k -> k.startsWith("HUB_") || k.startsWith("QUARKUS_") || k.startsWith("CAMEL_"));
        pb.environment().putAll(env);
        pb.environment().put("QUARKUS_HTTP_PORT", Integer.toString(port));
        // benchmarks listen on the loopback only (the prod profile's default is every interface)
        pb.environment().putIfAbsent("QUARKUS_HTTP_HOST", "127.0.0.1");
        pb.environment().putIfAbsent("HUB_RELAY_TCP_HOST", "127.0.0.1");
        Process p = pb.start();
        Files.writeString(work.resolve(name + ".pid"), Long.toString(p.pid()));
        return new ChildHub(name, port, log, p);
    }

    /** Waits for /q/health/ready (database, brokers and routes up). */
    public void awaitReady(Duration max) throws IOException, InterruptedException {
        await("/q/health/ready", max, 250);
    }

    /** Waits for /q/health/started; returns System.nanoTime() of the first UP answer. */
    public long awaitStarted(Duration max) throws IOException, InterruptedException {
        return await("/q/health/started", max, 20);
    }

    private long await(String path, Duration max, long pollMillis) throws IOException, InterruptedException {
        HttpRequest req = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + path))
                .timeout(Duration.ofSeconds(5)).build();
        long deadline = System.nanoTime() + max.toNanos();
        while (System.nanoTime() < deadline) {
            if (!process.isAlive()) {
                throw new IOException(name + " exited with " + process.exitValue() + "; see " + log);
            }
            try {
                if (HTTP.send(req, HttpResponse.BodyHandlers.discarding()).statusCode() == 200) {
                    return System.nanoTime();
                }
            } catch (IOException notYet) {
                // starting
            }
            Thread.sleep(pollMillis);
        }
        throw new IOException(name + ": " + path + " not UP within " + max.toSeconds() + " s; see " + log);
    }

    public boolean alive() {
        return process.isAlive();
    }

    public Path log() {
        return log;
    }

    public long pid() {
        return process.pid();
    }

    /** A field of /proc/&lt;pid&gt;/status in kB (VmRSS, VmHWM), or -1. */
    public long kb(String field) {
        return statusKb(process.pid(), field);
    }

    public double cpuSeconds() {
        return cpuSeconds(process.pid());
    }

    /** SIGTERM without waiting (many hubs stop in parallel; then {@link #awaitStop}). */
    public void signalStop() {
        process.destroy();
    }

    /**
     * Waits until the hub has exited, SIGKILL once {@code deadline} (System.nanoTime) has passed. A bench must not
     * return while its hubs still shut down: the next build or bench replaces the jars under them, and a hub whose
     * shutdown then loads a class from a deleted jar hangs for ever (seen: 27 such hubs left over by interleaved runs).
     */
    public void awaitStop(long deadline) {
        try {
            long left = deadline - System.nanoTime();
            if (left <= 0 || !process.waitFor(left, TimeUnit.NANOSECONDS)) {
                process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
            }
        } catch (InterruptedException e) {
            process.destroyForcibly();
            Thread.currentThread().interrupt();
        }
    }

    @Override
    public void close() {
        stop();
    }

    /** SIGTERM (graceful, as Kubernetes stops a pod), SIGKILL after 45 s. */
    public void stop() {
        if (process.isAlive()) {
            process.destroy();
            try {
                if (!process.waitFor(45, TimeUnit.SECONDS)) {
                    process.destroyForcibly().waitFor();
                }
            } catch (InterruptedException e) {
                process.destroyForcibly();
                Thread.currentThread().interrupt();
            }
        }
    }

    public static long statusKb(long pid, String field) {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/" + pid + "/status"))) {
                if (line.startsWith(field + ":")) {
                    return Long.parseLong(line.substring(field.length() + 1).trim().split("\\s+")[0]);
                }
            }
        } catch (IOException | RuntimeException gone) {
            // exited
        }
        return -1;
    }

    /** User + system CPU time in seconds (clock ticks of 1/100 s), 0 when the process is gone. */
    public static double cpuSeconds(long pid) {
        try {
            String stat = Files.readString(Path.of("/proc/" + pid + "/stat"));
            String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
            return (Long.parseLong(f[11]) + Long.parseLong(f[12])) / 100.0;
        } catch (IOException | RuntimeException gone) {
            return 0;
        }
    }

    private static final java.util.Set<Integer> HANDED_OUT = java.util.concurrent.ConcurrentHashMap.newKeySet();

    /**
     * A port free now and not handed out before in this run: the kernel may give a port just released to the next
     * {@code bind(0)}, and two hubs given the same port made one fail to start while the other answered its readiness
     * checks (a fan-out run then waited for a node that was never there).
     */
    public static int freePort() {
        for (int i = 0; i < 100; i++) {
            try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
                if (HANDED_OUT.add(s.getLocalPort())) {
                    return s.getLocalPort();
                }
            } catch (IOException e) {
                throw new IllegalStateException(e);
            }
        }
        throw new IllegalStateException("no free port not handed out before");
    }
}
