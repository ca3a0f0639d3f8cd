import type { Metadata } from 'next';
import type { ReactNode } from 'react';
import { Nav } from './_components/Nav';
import { Providers } from './providers';
import './globals.css';

export const metadata: Metadata = {
  title: 'Pedigree',
  description: 'Lineage and experiment tracking for multi-stage model training',
};

export default function RootLayout({ children }: { children: ReactNode }) {
  return (
    <html lang="en">
      <body>
        <Providers>
          <Nav />
          <main>{children}</main>
        </Providers>
      </body>
    </html>
  );
}
