'use client';
import { API_KEY_STORAGE } from './trpc';

/** The key the user entered, if any (kept in localStorage: see Nav). */
export const storedKey = () => (typeof window === 'undefined' ? null : window.localStorage.getItem(API_KEY_STORAGE));

/** In `keys` mode the server wants `Authorization: Bearer <key>`: on every request but a subscription's (see providers.tsx). */
export function authHeaders(): Record<string, string> {
  const key = storedKey();
  return key ? { authorization: `Bearer ${key}` } : {};
}
