package org.example.dubbo;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;

import org.apache.dubbo.config.ApplicationConfig;
import org.apache.dubbo.config.MethodConfig;
import org.apache.dubbo.config.ReferenceConfig;
import org.apache.dubbo.config.RegistryConfig;
import org.apache.dubbo.config.bootstrap.DubboBootstrap;
import org.apache.dubbo.rpc.RpcContext;
import org.apache.dubbo.rpc.RpcException;

/**
 * A Dubbo consumer CLI calling {@link EchoService} (or {@link InfoService}) at a direct
 * dubbo:// address (Hessian2, no registry, no retries), printing one JSON line per call and a
 * summary line.
 *
 * <pre>
 * Consumer --address 127.0.0.1:P [--version V] [--group G] [--timeout MS] [--attach k=v;k=v]
 *          [--service echo|info] [--method echo|echoAsync|whoami|fail|slow|fire|fired|mixed]
 *          [--arg TEXT] [--count N] [--heartbeat MS] [--hold MS]
 * </pre>
 *
 * <p>{@code echo} sends {@code TEXT-i} for call i and checks the answer; {@code echoAsync}
 * starts all N calls before waiting for any (N in flight on one connection); {@code slow}
 * passes {@code TEXT} as the milliseconds to sleep; {@code mixed} sends arguments of most
 * Hessian2 types. {@code --hold} keeps the connection open that long after the calls
 * (heartbeats flow with {@code --heartbeat}).
 */
public final class Consumer {
    private Consumer() {}

    public static void main(String[] argv) throws Exception {
        Loopback.install();
        Args args = new Args(argv);
        String address = args.require("address");
        String method = args.get("method", "echo");
        String arg = args.get("arg", "hello");
        int count = args.integer("count", 1);
        Map<String, String> attach = attachments(args.get("attach", ""));

        ApplicationConfig application = new ApplicationConfig("echo-consumer");
        application.setQosEnable(false);

        String url = "dubbo://" + Loopback.address(address) + "?serialization=hessian2&prefer.serialization=hessian2";
        String heartbeat = args.get("heartbeat", null);
        if (heartbeat != null) {
            url += "&heartbeat=" + heartbeat;
        }
        boolean info = args.get("service", "echo").equals("info");
        ReferenceConfig<?> reference = info ? new ReferenceConfig<InfoService>() : new ReferenceConfig<EchoService>();
        reference.setInterface(info ? InfoService.class : EchoService.class);
        reference.setUrl(url);
        reference.setTimeout(args.integer("timeout", 5000));
        reference.setRetries(0);
        reference.setCheck(false);
        Map<String, String> params = new HashMap<>();
        params.put("serialization", "hessian2");
        params.put("prefer.serialization", "hessian2");
        if (heartbeat != null) {
            params.put("heartbeat", heartbeat);
        }
        reference.setParameters(params);
        String version = args.get("version", null);
        if (version != null) {
            reference.setVersion(version);
        }
        String group = args.get("group", null);
        if (group != null) {
            reference.setGroup(group);
        }
        if (!info) {
            MethodConfig fire = new MethodConfig();
            fire.setName("fire");
            fire.setReturn(false);
            reference.setMethods(List.of(fire));
        }

        DubboBootstrap bootstrap = DubboBootstrap.getInstance()
                .application(application)
                .registry(new RegistryConfig(RegistryConfig.NO_AVAILABLE))
                .reference(reference);
        bootstrap.start();
        Object proxy = reference.get();

        int ok = 0;
        int failed = 0;
        int mismatched = 0;
        if (method.equals("echoAsync")) {
            EchoService echo = (EchoService) proxy;
            List<CompletableFuture<String>> futures = new ArrayList<>(count);
            for (int i = 0; i < count; i++) {
                setAttachments(attach);
                futures.add(echo.echoAsync(arg + "-" + i));
            }
            for (int i = 0; i < count; i++) {
                String expected = arg + "-" + i;
                try {
                    String value = futures.get(i).get();
                    boolean same = expected.equals(value);
                    ok++;
                    mismatched += same ? 0 : 1;
                    System.out.println(success(i, value, same));
                } catch (ExecutionException e) {
                    failed++;
                    System.out.println(failure(i, e.getCause()));
                }
            }
        } else {
            for (int i = 0; i < count; i++) {
                setAttachments(attach);
                String expected = arg + "-" + i;
                try {
                    Object value = call(proxy, info, method, expected, arg);
                    boolean same = !method.equals("echo") || expected.equals(value);
                    ok++;
                    mismatched += same ? 0 : 1;
                    System.out.println(success(i, value == null ? null : value.toString(), same));
                } catch (RuntimeException | EchoException e) {
                    failed++;
                    System.out.println(failure(i, e));
                }
            }
        }
        System.out.println("{\"summary\":true,\"ok\":" + ok + ",\"failed\":" + failed
                + ",\"mismatched\":" + mismatched + "}");
        System.out.flush();
        int hold = args.integer("hold", 0);
        if (hold > 0) {
            Thread.sleep(hold);
        }
        bootstrap.stop();
        System.exit(0);
    }

    private static Object call(Object proxy, boolean info, String method, String text, String arg)
            throws EchoException {
        if (info) {
            return ((InfoService) proxy).whoami();
        }
        EchoService echo = (EchoService) proxy;
        return switch (method) {
            case "echo" -> echo.echo(text);
            case "whoami" -> echo.whoami();
            case "fail" -> echo.fail(text);
            case "slow" -> echo.slow(Long.parseLong(arg));
            case "fire" -> {
                echo.fire(text);
                yield null;
            }
            case "fired" -> echo.fired();
            case "mixed" -> mixed(echo);
            default -> throw new IllegalArgumentException("unknown --method " + method);
        };
    }

    /** {@link EchoService#mixed} with fixed arguments covering most Hessian2 types. */
    private static String mixed(EchoService echo) {
        byte[] bin = new byte[40000];
        for (int k = 0; k < bin.length; k++) {
            bin[k] = (byte) (k * 7);
        }
        List<Object> list = new ArrayList<>(List.of(1, -17, 300, 70000, 3_000_000_000L, "x", 2.5, true));
        list.add(null);
        Map<String, Object> map = new LinkedHashMap<>();
        map.put("int", 47);
        map.put("long", 12L);
        map.put("double", 0.0);
        map.put("double1", 1.0);
        map.put("byteDouble", -3.0);
        map.put("shortDouble", 1000.0);
        map.put("floatDouble", 0.25);
        map.put("pi", Math.PI);
        map.put("unicode", "h\u00e9llo \u4e16\u754c \ud83d\ude00");
        map.put("ints", new int[] {1, 2, 3});
        map.put("nested", Map.of("k", List.of("v")));
        Payload payload = new Payload("first", 3, List.of("a", "b"));
        payload.next = payload;
        Payload second = new Payload("second", 4, List.of());
        second.next = payload;
        map.put("second", second);
        map.put("minute", new java.util.Date(1_700_000_040_000L));
        StringBuilder big = new StringBuilder();
        while (big.length() < 40000) {
            big.append("chunked-string-").append(big.length()).append(' ');
        }
        return echo.mixed(-5, -9_000_000_000L, 12.375, false, new java.util.Date(1_700_000_000_123L),
                bin, list, map, payload, big.toString(), null);
    }

    private static Map<String, String> attachments(String spec) {
        Map<String, String> map = new HashMap<>();
        for (String pair : spec.split(";")) {
            if (pair.isEmpty()) {
                continue;
            }
            int eq = pair.indexOf('=');
            if (eq < 1) {
                throw new IllegalArgumentException("--attach wants k=v;k=v, got " + pair);
            }
            map.put(pair.substring(0, eq), pair.substring(eq + 1));
        }
        return map;
    }

    private static void setAttachments(Map<String, String> attach) {
        for (Map.Entry<String, String> e : attach.entrySet()) {
            RpcContext.getClientAttachment().setAttachment(e.getKey(), e.getValue());
        }
    }

    private static String success(int i, String value, boolean same) {
        return "{\"call\":" + i + ",\"ok\":true,\"value\":" + Json.str(value) + ",\"same\":" + same + "}";
    }

    private static String failure(int i, Throwable e) {
        while (e instanceof CompletionException && e.getCause() != null) {
            e = e.getCause();
        }
        StringBuilder b = new StringBuilder("{\"call\":").append(i).append(",\"ok\":false,\"error\":")
                .append(Json.str(e.getClass().getName())).append(",\"message\":").append(Json.str(e.getMessage()));
        if (e instanceof RpcException rpc) {
            b.append(",\"code\":").append(rpc.getCode()).append(",\"timeout\":").append(rpc.isTimeout());
        }
        return b.append('}').toString();
    }
}
