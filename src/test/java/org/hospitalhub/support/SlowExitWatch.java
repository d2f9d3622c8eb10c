package org.hospitalhub.support;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

/**
 * A diagnostic for the test JVM's exit: Surefire has twice reported "kill self fork JVM ... 30 seconds after
 * System.exit(0)", i.e. a shutdown hook that took more than 30 s, without saying which. Installed once per JVM; if the
 * exit is still running 20 s after the hooks started, every thread's stack goes to
 * {@code target/slow-exit-<pid>.txt} and to standard error. A quick exit halts the JVM before it wakes up.
 */
public final class SlowExitWatch {

    private static boolean installed;

    private SlowExitWatch() {
    }

    public static synchronized void install() {
        if (installed || Boolean.getBoolean("hub.slow-exit-watch.installed")) {
            return; // once per JVM, whatever class loader Quarkus loaded this class in
        }
        installed = true;
        System.setProperty("hub.slow-exit-watch.installed", "true");
        // the hook itself returns at once (the JVM waits for every hook): a daemon thread it starts does the watching
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            Thread watch = new Thread(SlowExitWatch::dumpAfter20s, "slow-exit-watch");
            watch.setDaemon(true);
            watch.start();
        }, "slow-exit-watch-hook"));
    }

    private static void dumpAfter20s() {
        try {
            Thread.sleep(20_000);
        } catch (InterruptedException e) {
            return;
        }
        StringBuilder dump = new StringBuilder("The test JVM's exit has run for 20 s; its threads:\n");
        for (Map.Entry<Thread, StackTraceElement[]> t : Thread.getAllStackTraces().entrySet()) {
            dump.append('\n').append(t.getKey()).append(" state=").append(t.getKey().getState()).append('\n');
            for (StackTraceElement e : t.getValue()) {
                dump.append("    at ").append(e).append('\n');
            }
        }
        System.err.println(dump);
        try {
            Files.writeString(Path.of("target", "slow-exit-" + ProcessHandle.current().pid() + ".txt"), dump);
        } catch (IOException e) {
            System.err.println("cannot write the slow-exit dump: " + e);
        }
    }
}
