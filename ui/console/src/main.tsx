// The operator console as an Airflow React app plugin: the Airflow UI renders this component for each of the
// console's navigation entries (route plugin/dynamics-<page>), inside its own layout and Chakra theme.
import { Box, Heading, HStack, Stack, Text } from "@chakra-ui/react";
import { useEffect, useState } from "react";
import { useLocation } from "react-router-dom";

import { airflowUrl, type Session, session } from "./api";
import { ConsoleLink } from "./components";
import { DocumentsPage, JobQueuePage, LogPage } from "./pages/JobQueue";
import { MailboxesPage } from "./pages/Mailboxes";
import { SyncPage } from "./pages/Sync";
import { TrendsPage } from "./pages/Trends";

const TITLES: Record<string, string> = {
  "job-queue": "Job Queue Entries",
  "my-job-queue": "My Job Queue",
  documents: "Documents to handle",
  "job-queue-log": "Job Queue Log Entries",
  sync: "Integration Sync",
  mailboxes: "Mailboxes",
  trends: "Trends",
};

const pageOf = (pathname: string): string => {
  const match = /plugin\/dynamics-([a-z-]+)/.exec(pathname);
  return match && match[1] in TITLES ? match[1] : "job-queue";
};

export default function DynamicsConsole() {
  const location = useLocation();
  const page = pageOf(location.pathname);
  const [user, setUser] = useState<Session>();
  const [error, setError] = useState<string>();
  useEffect(() => {
    session().then(setUser, (e: Error) => setError(e.message));
  }, []);
  if (error)
    return (
      <Box p={4} data-testid="session-error">
        <Text color="fg.error">{error}</Text>
        <a href={airflowUrl(`auth/login/?next=${encodeURIComponent(window.location.href)}`)} style={{ textDecoration: "underline" }}>
          Sign in
        </a>
      </Box>
    );
  if (!user) return null;
  const canEdit = user.can_edit;
  return (
    <Stack p={4} gap={4} data-testid="dynamics-console" data-page={page}>
      <HStack justify="space-between" wrap="wrap">
        <Heading size="xl" as="h1">
          {TITLES[page]}
        </Heading>
        <HStack gap={3} fontSize="sm">
          {Object.entries(TITLES)
            .filter(([key]) => key !== page)
            .map(([key, title]) => (
              <ConsoleLink key={key} page={key}>
                {title}
              </ConsoleLink>
            ))}
          <Text color="fg.muted">
            {user.user}
            {canEdit ? "" : " (read only)"}
          </Text>
        </HStack>
      </HStack>
      {page === "job-queue" || page === "my-job-queue" ? (
        <JobQueuePage key={page} mine={page === "my-job-queue"} canEdit={canEdit} />
      ) : page === "documents" ? (
        <DocumentsPage canEdit={canEdit} />
      ) : page === "job-queue-log" ? (
        <LogPage key={location.search} />
      ) : page === "sync" ? (
        <SyncPage key={location.search} canEdit={canEdit} />
      ) : page === "mailboxes" ? (
        <MailboxesPage canEdit={canEdit} />
      ) : (
        <TrendsPage />
      )}
    </Stack>
  );
}
