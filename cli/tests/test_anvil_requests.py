"""What the CLI sends and how it reads what comes back, against a stand-in server: every
failure is one line on stderr and exit status 1."""

from __future__ import annotations

import json
import socket
import unittest

from anvil_fakes import FakeAnvil, Home, Reply, free_port

HEALTH = {
    "checked_at": 0,
    "models": [
        {
            "model": "m",
            "status": "up",
            "last_check": None,
            "in_flight": 1,
            "queued": 0,
            "max_concurrency": 4,
            "queue_size": 16,
        },
    ],
}
# GET /api/v1/usage of a server from before the *_left fields.
OLD_USAGE = {
    "period": "2026-05",
    "key": {"used_month": "1", "used_total": "3", "monthly_limit": "4", "total_limit": None},
    "member": {"used_month": "2", "monthly_limit": "10"},
    "grant": {"allocated": "100", "used": "50", "held": "0.5", "left": "49.5"},
    "remaining": "3",
    "limited_by": "key_monthly",
}
CHARGED = ': anvil {"credits_charged": "0.25", "remaining": "9.75", "limited_by": "grant"}'


def chunk(text: str) -> str:
    return "data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": text}}]})


class RequestTests(unittest.TestCase):
    def setUp(self) -> None:
        self.home = Home()
        self.addCleanup(self.home.close)

    def anvil(self, server: FakeAnvil, *args: str, base: str = "", **env: str):
        env.setdefault("ANVIL_API_KEY", "anv-test")
        return self.home.run(*args, ANVIL_BASE_URL=server.url + base, **env)

    def assert_failed(self, result, message: str) -> None:
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertNotIn("Traceback", result.stderr)
        self.assertEqual(result.stderr.strip().splitlines()[-1], f"Error: {message}")

    def test_the_base_url_may_be_the_root_or_the_apis(self) -> None:
        with FakeAnvil({"/api/health": Reply(body=HEALTH)}) as server:
            for base in ("", "/", "/api/v1", "/api/v1/", "/api"):
                with self.subTest(base=base):
                    result = self.anvil(server, "health", base=base)
                    self.assertEqual(result.returncode, 0, result.stderr)
                    self.assertEqual(result.stdout.splitlines()[1].split()[:3], ["m", "up", "1/4"])
        self.assertEqual({r.path for r in server.requests}, {"/api/health"})
        self.assertNotIn("Authorization", server.requests[0].headers)

    def test_it_sends_the_key_as_a_bearer_token(self) -> None:
        with FakeAnvil({"/api/v1/usage": Reply(body=OLD_USAGE)}) as server:
            self.anvil(server, "billing", "status", ANVIL_API_KEY="anv-secret")
        self.assertEqual(server.requests[0].headers["Authorization"], "Bearer anv-secret")

    def test_what_is_left_is_worked_out_for_a_server_that_does_not_say(self) -> None:
        with FakeAnvil({"/api/v1/usage": Reply(body=OLD_USAGE)}) as server:
            result = self.anvil(server, "billing", "status")
        self.assertEqual(result.returncode, 0, result.stderr)
        lines = [line.split() for line in result.stdout.splitlines()]
        self.assertIn(["key,", "this", "month", "4", "1", "3", "<-", "binding"], lines)
        self.assertIn(["key,", "in", "total", "no", "limit", "3", "-"], lines)
        self.assertIn(["member,", "this", "month", "10", "2", "8"], lines)
        self.assertIn("(The grant's requests in flight hold 0.5 credits.)", result.stdout)

    def test_an_openai_shaped_refusal_is_its_message(self) -> None:
        error = {
            "error": {
                "message": "The grant's credits are used up (0 credits left).",
                "type": "insufficient_quota",
                "param": None,
                "code": "insufficient_quota",
            }
        }
        with FakeAnvil({"/api/v1/usage": Reply(429, error)}) as server:
            result = self.anvil(server, "billing", "status")
        self.assert_failed(
            result,
            "The grant's credits are used up (0 credits left). (HTTP 429, insufficient_quota)",
        )

    def test_a_refusal_that_is_not_json_is_its_status(self) -> None:
        with FakeAnvil({"/api/v1/usage": Reply(502, b"<html>proxy</html>")}) as server:
            result = self.anvil(server, "billing", "status")
        self.assert_failed(result, "Bad Gateway (HTTP 502)")

    def test_an_answer_that_is_not_json_is_not_from_anvil(self) -> None:
        with FakeAnvil({"/api/health": Reply(200, b"<html>hello</html>")}) as server:
            result = self.anvil(server, "health")
        self.assert_failed(
            result, f"The server at {server.url} did not answer with JSON: is it an Anvil server?"
        )

    def test_an_answer_of_an_unknown_shape_is_one_line_too(self) -> None:
        with FakeAnvil({"/api/v1/usage": Reply(body={"period": "2026-05"})}) as server:
            result = self.anvil(server, "billing", "status")
        self.assert_failed(
            result, "anvil failed unexpectedly (KeyError: 'key'). Is the server an Anvil?"
        )

    def test_nothing_listening_and_a_silent_server(self) -> None:
        url = f"http://127.0.0.1:{free_port()}"
        refused = self.home.run("health", ANVIL_BASE_URL=url)
        self.assert_failed(
            refused,
            f"Can not reach the Anvil server at {url}: connection refused. Is the URL right?",
        )
        with socket.create_server(("127.0.0.1", 0)) as silent:
            url = f"http://127.0.0.1:{silent.getsockname()[1]}"
            result = self.home.run("--timeout", "0.2", "health", ANVIL_BASE_URL=url)
        self.assert_failed(
            result, f"No answer from the Anvil server at {url} within 0.2 s (timed out)."
        )

    def test_a_chat_streams_and_reports_the_credits_on_stderr(self) -> None:
        events = [chunk("Hello"), chunk(", world"), chunk(""), CHARGED, "data: [DONE]"]
        with FakeAnvil({"/api/v1/chat/completions": Reply(events=events)}) as server:
            result = self.anvil(
                server, "chat", "Hi", "-m", "m", "--max-tokens", "7", "--system", "Be brief."
            )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout, "Hello, world\n")
        self.assertEqual(
            result.stderr, "Credits charged: 0.25; 9.75 left under the grant's credits.\n"
        )
        sent = server.requests[0].body
        self.assertEqual(
            sent,
            {
                "model": "m",
                "stream": True,
                "max_tokens": 7,
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi"},
                ],
            },
        )

    def test_a_failure_the_stream_reports_comes_after_the_credits(self) -> None:
        failure = {
            "error": {
                "message": "The model's backend broke off the answer.",
                "type": "api_error",
                "param": None,
                "code": "backend_error",
            }
        }
        events = [chunk("Half"), "data: " + json.dumps(failure), CHARGED, "data: [DONE]"]
        with FakeAnvil({"/api/v1/chat/completions": Reply(events=events)}) as server:
            result = self.anvil(server, "chat", "Hi", "-m", "m")
        self.assertEqual(result.stdout, "Half\n")
        self.assertTrue(result.stderr.startswith("Credits charged: 0.25;"))
        self.assert_failed(result, "The model's backend broke off the answer. (backend_error)")

    def test_a_stream_cut_before_its_end_is_a_failure(self) -> None:
        with FakeAnvil({"/api/v1/chat/completions": Reply(events=[chunk("Hal")])}) as server:
            result = self.anvil(server, "chat", "Hi", "-m", "m")
        self.assertEqual(result.stdout, "Hal\n")
        self.assert_failed(result, f"The answer from {server.url} broke off before its end.")

    def test_jobs_submit_sends_the_native_body_and_prints_the_ids(self) -> None:
        ids = ["a" * 32, "b" * 32]
        reply = Reply(body={"success": True, "ids": ids})
        with FakeAnvil({"/api/v1/jobs": reply}) as server:
            result = self.anvil(
                server, "jobs", "submit", "-", "-m", "m", "--max-tokens", "5", "--stop", ".",
                input="First\n\nSecond\r\n",
            )  # fmt: skip
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout, f"{ids[0]}\n{ids[1]}\n")
        self.assertEqual(
            server.requests[0].body,
            {
                "model": "m",
                "inputs": ["First", "Second"],
                "parameters": {"max_tokens": 5, "stop": "."},
            },
        )

    def test_a_jobs_refusal_is_its_message_naming_the_option(self) -> None:
        error = {"success": False, "error": "parameters.top_p: must be a number from 0 to 1."}
        with FakeAnvil({"/api/v1/jobs": Reply(400, error)}) as server:
            result = self.anvil(server, "jobs", "submit", "-i", "x", "-m", "m", "--top-p", "1")
        self.assert_failed(result, "--top-p: must be a number from 0 to 1. (HTTP 400)")

    def test_jobs_status_is_a_table_and_cancel_purge_deletes(self) -> None:
        job = {
            "status": "done", "log": "Hello there", "tag": "m", "runtime": 75,
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "credits": "0.0001"},
        }  # fmt: skip
        routes = {
            "/api/v1/jobs/j1": Reply(body={"success": True, "jobs": {"j1": job}}),
            "/api/v1/jobs/j1,j2": Reply(
                body={"success": True, "jobs": {"j1": job, "j2": {"status": "not_found"}}}
            ),
        }
        with FakeAnvil(routes) as server:
            one = self.anvil(server, "jobs", "status", "j1")
            two = self.anvil(server, "jobs", "status", "j1,j2")
            deleted = {"success": True, "jobs": {"j1": {"status": "deleted"}}}
            routes["DELETE /api/v1/jobs/j1"] = Reply(body=deleted)
            purged = self.anvil(server, "jobs", "cancel", "j1", "--purge")
        self.assertEqual(one.returncode, 0, one.stderr)
        lines = one.stdout.splitlines()
        self.assertEqual(lines[1].split(), ["j1", "done", "m", "1m15s", "3", "2", "0.0001"])
        self.assertEqual(lines[2:], ["", "Hello there"])
        self.assertEqual(two.stdout.splitlines()[2].split(), ["j2", "not", "found"])
        self.assert_failed(two, "No job j2 (unknown, deleted, expired, or not yours).")
        self.assertEqual(
            [(r.method, r.path) for r in server.requests[2:]],
            [("GET", "/api/v1/jobs/j1"), ("DELETE", "/api/v1/jobs/j1?purge=true")],
        )
        self.assertEqual(purged.stdout, "Job j1 and its output are deleted.\n")


if __name__ == "__main__":
    unittest.main()
