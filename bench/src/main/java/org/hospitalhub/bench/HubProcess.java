package org.hospitalhub.bench;

import java.io.IOException;
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
 * The hub as it is shipped: {@code java -jar target/quarkus-app/quarkus-run.jar} in a child process, configured
 * through its documented environment variables, stdout/stderr to work/hub.log. Memory figures come from
 * /proc/&lt;pid&gt;/status (VmHWM = peak resident set), CPU time from /proc/&lt;pid&gt;/stat.
 */
final class HubProcess implements AutoCloseable {

    private final Process process;
    private final int httpPort;
    private final Path log;

    private HubProcess(Process process, int httpPort, Path log) {
        this.process = process;
        this.httpPort = httpPort;
        this.log = log;
    }

    static HubProcess start(Path hubRoot, Path work, String javaOpts, Map<String, String> env) throws IOException {
        Path jar = hubRoot.resolve("target/quarkus-app/quarkus-run.jar");
        if (!Files.exists(jar)) {
            throw new IOException("no hub jar at " + jar + " (./mvnw -q package -DskipTests)");
        }
        int port = KafkaBrokerProcess.freePort();
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        if (!javaOpts.isBlank()) {
            cmd.addAll(List.of(javaOpts.trim().split("\\s+")));
        }
        cmd.add("-Dhub.bench.work=" + work); // marks the process as the benchmark's (run.sh's clean-up checks it)
        cmd.add("-jar");
        cmd.add(jar.toString());
        Path log = work.resolve("hub.log");
        ProcessBuilder pb = new ProcessBuilder(cmd).directory(work.toFile()).redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.to(log.toFile()));
        pb.environment().keySet().removeIf(k -> k.startsWith("HUB_") || k.startsWith("QUARKUS_") || k.startsWith("CAMEL_"));
        pb.environment().putAll(env);
        pb.environment().put("QUARKUS_HTTP_PORT", Integer.toString(port));
        Process p = pb.start();
        Files.writeString(work.resolve("hub.pid"), Long.toString(p.pid()));
        return new HubProcess(p, port, log);
    }

    /** Waits for /q/health/started; returns System.nanoTime() of the first UP answer. */
    long awaitStarted(Duration max) throws IOException, InterruptedException {
        HttpClient client = HttpClient.newBuilder().connectTimeout(Duration.ofMillis(500)).build();
        HttpRequest req = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + httpPort + "/q/health/started"))
                .timeout(Duration.ofSeconds(2)).build();
        long deadline = System.nanoTime() + max.toNanos();
        while (System.nanoTime() < deadline) {
            if (!process.isAlive()) {
                throw new IOException("the hub exited with " + process.exitValue() + "; see " + log);
            }
            try {
                if (client.send(req, HttpResponse.BodyHandlers.discarding()).statusCode() == 200) {
                    return System.nanoTime();
                }
            } catch (IOException notYet) {
                // not listening yet
            }
            Thread.sleep(20);
        }
        throw new IOException("the hub did not start within " + max + "; see " + log);
    }

    int port() {
        return httpPort;
    }

    boolean alive() {
        return process.isAlive();
    }

    long pid() {
        return process.pid();
    }

    /** A field of /proc/&lt;pid&gt;/status in kB (VmHWM, VmRSS), or -1. */
    long statusKb(String field) {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/" + process.pid() + "/status"))) {
                if (line.startsWith(field + ":")) {
                    return Long.parseLong(line.substring(field.length() + 1).trim().split("\\s+")[0]);
                }
            }
        } catch (IOException | RuntimeException gone) {
            // process gone
        }
        return -1;
    }

    /** User + system CPU time of the process in seconds (clock ticks of 1/100 s). */
    double cpuSeconds() {
        try {
            String stat = Files.readString(Path.of("/proc/" + process.pid() + "/stat"));
            String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
            return (Long.parseLong(f[11]) + Long.parseLong(f[12])) / 100.0;
        } catch (IOException | RuntimeException gone) {
            return -1;
        }
    }

    Path log() {
        return log;
    }

    /** Stops the hub as Kubernetes would (SIGTERM, graceful), forcibly after 45 s. */
    @Override
    public void close() {
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
}
