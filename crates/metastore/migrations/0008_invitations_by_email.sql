-- An addressee lists the proposals waiting for their answer by email
-- (`GetInvitations`); without this, every listing reads every invitation.
CREATE INDEX share_invitees_by_email ON share_invitees (email, state);
