"""The config file: profiles, mode 0600, the environment winning over it. No server needed."""

from __future__ import annotations

import stat
import unittest

from anvil_fakes import Home


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class ConfigureTests(unittest.TestCase):
    def setUp(self) -> None:
        self.home = Home()
        self.addCleanup(self.home.close)
        self.run_anvil = self.home.run

    def configure(self, *args: str, **env: str):
        result = self.run_anvil(*args, **env)
        self.assertEqual(result.returncode, 0, result.stderr)
        return result

    def test_it_writes_a_file_only_the_user_can_read(self) -> None:
        self.configure(
            "configure",
            "--base-url",
            "https://anvil.example.org/api/v1/",
            "--api-key",
            "anv-abcdefghijklmnop",
        )

        path = self.home.config_file
        self.assertEqual(mode(path), 0o600)
        self.assertEqual(mode(path.parent), 0o700)
        text = path.read_text()
        self.assertIn("[default]", text)
        self.assertIn("base_url = https://anvil.example.org/api/v1", text)
        self.assertIn("api_key = anv-abcdefghijklmnop", text)

    def test_rewriting_a_file_others_could_read_makes_it_private(self) -> None:
        self.configure("configure", "--base-url", "http://127.0.0.1:1")
        self.home.config_file.chmod(0o644)

        self.configure("configure", "--api-key", "anv-abcdefghijklmnop")

        self.assertEqual(mode(self.home.config_file), 0o600)
        self.assertIn("base_url = http://127.0.0.1:1", self.home.config_file.read_text())

    def test_profiles_are_kept_side_by_side(self) -> None:
        self.configure("configure", "--base-url", "http://one.example.org")
        self.configure("--profile", "lab", "configure", "--base-url", "http://two.example.org")

        shown = self.configure("configure", "--show").stdout
        self.assertIn("http://one.example.org", shown)
        lab = self.configure("configure", "--show", ANVIL_PROFILE="lab").stdout
        self.assertIn("Profile 'lab'", lab)
        self.assertIn("http://two.example.org", lab)

    def test_the_environment_wins_and_show_says_so(self) -> None:
        self.configure("configure", "--base-url", "http://file.example.org")

        shown = self.configure("configure", "--show", ANVIL_BASE_URL="http://env.example.org")

        self.assertIn("http://env.example.org", shown.stdout)
        self.assertIn("environment ANVIL_BASE_URL", shown.stdout)
        self.assertNotIn("file.example.org", shown.stdout)

    def test_it_answers_questions_from_a_pipe_and_never_echoes_a_key(self) -> None:
        answers = "http://127.0.0.1:1\nanv-abcdefghijklmnopqrst\nanvm-abcdefghijklmnopqrst\n"
        self.configure("configure", input=answers)
        again = self.configure("configure", input="\n\n\n")

        self.assertIn("API key [anv-abcdef..., Enter keeps it]", again.stdout)
        self.assertNotIn("anv-abcdefghijklmnopqrst", again.stdout)
        self.assertIn(
            "management_key = anvm-abcdefghijklmnopqrst", self.home.config_file.read_text()
        )

    def test_a_garbled_file_is_one_line_naming_it(self) -> None:
        self.home.config_file.parent.mkdir(parents=True)
        self.home.config_file.write_text("base_url = no section\n")

        result = self.run_anvil("health")

        self.assertEqual(result.returncode, 1)
        self.assertTrue(result.stderr.startswith(f"Error: Can not read {self.home.config_file}"))
        self.assertEqual(result.stderr.count("\n"), 1)

    def test_bad_values_are_bad_arguments(self) -> None:
        for args in (
            ["configure", "--base-url", "anvil.example.org"],
            ["configure", "--base-url", "http://host:port"],
            ["configure", "--api-key", "anvm-a-management-key"],
            ["--profile", "a b", "configure", "--show"],
            ["--timeout", "0", "health"],
        ):
            with self.subTest(args=args):
                result = self.run_anvil(*args)
                self.assertEqual(result.returncode, 2, result.stderr)
                self.assertIn("Error: Invalid value", result.stderr)
        self.assertFalse(self.home.config_file.exists())


if __name__ == "__main__":
    unittest.main()
