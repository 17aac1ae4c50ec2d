// Who is signed in (null when nobody is); shared by the views.

export const state = { user: null };
